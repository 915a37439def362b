app-name = hikyaku リモートUI
lang-en = English
lang-ja = 日本語
nav-portal = ポータル
nav-settings = 設定/登録
nav-jobs = 送信ジョブ履歴
logout = ログアウト
login-title = ログイン
login-user = ユーザー名
login-password = パスワード
login-button = ログイン
login-failed = ログインできませんでした。ユーザー名とパスワードを確認してください。何度も失敗すると、しばらく待つ必要があります。
logged-in-as = { $user }({ $role })でログイン中
role-administrator = Administrator
role-network_admin = NetworkAdmin
role-general_user = GeneralUser
plain-http-warning = 警告: リモートUIがネットワーク上で暗号化されていないHTTPで提供されています。パスワードや設定が暗号化されずに送られます。証明書(web.tls_cert)を設定するか、ループバックのみで待ち受けてください。
setup-title = 初期設定
setup-intro = 最初の管理者(Administrator)を作成します。このリンクは一度だけ使えます。
setup-password-confirm = パスワード(確認)
setup-button = 管理者を作成
setup-expired = この初期設定リンクは有効期限が切れています。hikyakuを再起動して新しいリンクを表示するか、「hikyaku admin add-user」を使ってください。
setup-used = この初期設定リンクは使用済みです。ログインしてください。
setup-invalid = この初期設定リンクは無効です。hikyakuの起動時に表示されたリンクを使ってください。
setup-done = 管理者を作成しました。ログインしてください。
password-mismatch = パスワードが一致しません。
password-too-short = パスワードは10文字以上にしてください。
name-invalid = ユーザー名は1〜64文字の英数字、ピリオド、ハイフン、アンダースコアで入力してください。
portal-title = リモートUIのポータル画面
portal-device-state = 本機の状態
portal-queue = 送信キュー
portal-queue-counts = 待機中 { $queued } 件、送信中 { $sending } 件、再送待ち { $deferred } 件、失敗 { $failed } 件、送信済み { $sent } 件
portal-last-error = 最新のエラー
portal-no-error = なし
settings-title = 設定/登録
menu-send = 送信
menu-email = Eメール設定
menu-oauth-microsoft = OAuth 2.0(Microsoft)の設定
menu-oauth-google = OAuth 2.0(Google)の設定
menu-submitters = SMTP送信者
menu-management = 管理設定
menu-users = ユーザー
menu-datetime = 日付/時刻
menu-ca = CA証明書
menu-audit = 監査ログ
provider-microsoft = Microsoft
provider-google = Google
token-status = トークンの稼働状況
token-status-not_registered = 未登録
token-status-authorizing = 認可処理中
token-status-active = 稼働中
token-status-error = エラー
connection-status = サーバーの接続状況
connection-status-not_checked = 未確認
connection-status-successful = 成功
connection-status-failed = 失敗
not-configured = まだ設定されていません。
basic-settings = 基本設定
edit = 編集
edit-basic-settings = 基本設定の編集
refresh = 更新
ok = OK
cancel = キャンセル
on = ON
off = OFF
use-oauth-microsoft = OAuth 2.0(Microsoft)を使用する
use-oauth-google = OAuth 2.0(Google)を使用する
verify-cert = サーバー証明書を検証する
verify-cn = CNを検証項目に追加する
ms-endpoint = Microsoft Entra ID認可サーバーのエンドポイント
ms-endpoint-hint = https://login.microsoftonline.com/<テナント名>/oauth2/v2.0 — テナント名: common/consumers/organizations、またはテナントIDかドメイン名
client-id = クライアントID
client-secret = クライアントシークレット
client-secret-set = (保存済み。変更しない場合は空欄)
client-id-ms-hint = Microsoft Entraで登録したアプリのアプリケーション(クライアント)ID(「パブリック クライアント フローを許可する」とSMTP.Sendのアクセス許可が必要)。READMEを参照してください。
message = メッセージ
user-code = ユーザーコード
user-code-expiration = ユーザーコードの有効期限
new-code = 新しいコードを取得
mailbox = 認可されたメールボックス
identity-unverified = (未検証: 証明書の検証がOFFです)
access-expires = アクセストークンの有効期限
last-refreshed = 最終更新
refresh-token-now = トークンを今すぐ更新
clock-skew = 時刻のずれ
authorization-info = 認可用情報
register = 登録
register-authorization = 認可用情報の登録
google-auth-url = Google認可サーバー用URL
authorization-code = 認可コード
google-code-hint = 認可処理のあと、ブラウザーにエラー画面が表示されます。そのURL全体(またはcode=から&scopeの前までの部分)をこの欄に入力してください。
google-loopback = hikyakuが動作しているコンピューター上のブラウザーで認可した場合は、入力しなくても自動で登録されます。
seed-note-microsoft = OAuth2.0を使用しない設定に変更したあとに、再度使用する場合は、手順1からOAuth2.0認証設定をやりなおします。
seed-note-google = OAuth2.0を使用しない設定に変更したあとに、再度使用する場合は、Step 2の設定をやりなおします。
seed-preparation = OAuth2.0認証の設定をする前に、本機の日付と時刻が正しく設定されていることを確認します。
verify-off-warning = サーバー証明書の検証がOFFです。通信は暗号化されますが、サーバーの正当性は確認されません。
verification-uri-not-https = 認可サーバーから受け取ったサインイン用のアドレスがhttpsではないため、リンクにしていません。基本設定の編集でMicrosoft Entra ID認可サーバーのエンドポイントを確認してください。
saved = 保存しました。
send-test = テストメールを送信
test-recipient = 宛先
users-title = ユーザー
user-add = ユーザーを追加
user-delete = 削除
role = 権限
created = 作成日時
audit-title = 監査ログ
audit-at = 日時
audit-actor = ユーザー
audit-source = 接続元
audit-action = 操作
audit-detail = 詳細
datetime-title = 日付/時刻
datetime-utc = 現在時刻(UTC)
datetime-local = 現在時刻({ $zone })
datetime-zone = 表示タイムゾーン
datetime-skew-warning = { $provider }との時刻のずれが{ $secs }秒あります。トークンや証明書が正しく判定されないおそれがあります。システムの時刻を同期(NTP)してください。
ca-title = CA証明書
ca-intro = システムの証明書に加えて信頼するCA証明書です。すべての外部へのTLS通信で使われます(TLSを検査するファイアウォールの内側で必要です)。
ca-upload = 追加(PEM)
ca-subject = 発行先
ca-issuer = 発行者
ca-validity = 有効期間
ca-fingerprint = SHA-256フィンガープリント
email-title = Eメール設定
smtp-server = SMTPサーバー
smtp-port = ポート番号
smtp-security = 接続の暗号化
smtp-starttls = STARTTLS
smtp-implicit = TLS(暗黙)
sender = 送信者アドレス
sender-hint = 空欄の場合は認可されたメールボックス
account-admin-only = このアカウントで送信する設定は管理者だけが変更できます。
default-sender = 送信に使う既定のアカウント
jobs-title = 送信ジョブ履歴
job-time = 日時
job-from = 送信者
job-to = 宛先
job-subject = 件名
job-size = サイズ
job-account = アカウント
job-state = 状態
job-attempts = 試行回数
job-next = 次回の試行
job-reply = 最新の応答
job-retry = 今すぐ再送
job-search = 差出人・宛先・件名で検索
jobs-newer = ← 新しいジョブ
jobs-older = 古いジョブ →
job-delete = 削除
job-state-queued = 待機中
job-state-sending = 送信中
job-state-deferred = 再送待ち
job-state-sent = 送信済み
job-state-failed = 失敗
filter = 絞り込み
all = すべて
none = なし
forbidden = このページまたは操作の権限がありません。
csrf-failed = フォームの有効期限が切れているか、このページから送信されていません。ページを再読み込みしてやり直してください。
not-found = ページが見つかりません。
error-title = エラー
error-id = リクエストID
back = 戻る
submitters-intro = 機器やアプリケーションは、この名前とパスワードでhikyakuのSMTPに認証(AUTH PLAIN/LOGIN)して送信します。送信者か許可アドレスがなければ何も送信できません(オープンリレーにはなりません)。
submitter-add = 送信者を追加
default-account = 既定のアカウント
allowlist = 許可アドレス
allowlist-intro = これらのアドレスの機器は認証なしで送信できます(認証できない機器向け)。範囲はできるだけ狭くしてください。
allowlist-add = アドレスを追加
ca-used-by = 使用先
ca-used-by-all = OAuthエンドポイント、SMTP、接続確認
ca-used-by-not-google = MicrosoftのOAuthエンドポイント、SMTP、接続確認(Googleには使われません。GoogleにはAdministratorが追加したCA証明書だけが使われます)
datetime-sync = システム時刻の同期
datetime-sync-yes = 同期済み(NTP)
datetime-sync-no = 未同期 — トークンや証明書を正しく判定するためにNTPを設定してください
datetime-sync-unknown = 不明(OSから取得できません)
datetime-heal = OAuth2.0認証の設定後に日付/時刻が変更された場合、hikyakuは時刻の変化を検知して接続を確認し、トークンを自動で更新します。更新に失敗した場合のみ、認可処理をやりなおす必要があります。
test-sent = テストメールをキューに入れました。送信ジョブ履歴を確認してください。
menu-network = ネットワーク
network-title = ネットワーク
network-intro = OAuth2.0のエンドポイントと接続確認に使う、外部へのHTTP(S)プロキシです(企業ネットワークで必要な場合があります)。HTTPSはCONNECTでプロキシを経由します。ホストを空にすると直接接続します(環境変数HTTPS_PROXYのプロキシが使われます)。
network-smtp-note = Exchange OnlineやGmailへのSMTP送信はこのプロキシを経由しません(HTTPプロキシではSMTPを中継できません)。ファイアウォールでSMTPのポート(587または465)を許可してください。
network-proxy-on = プロキシ:使用中
network-proxy-off = プロキシ:使用しない(直接接続)
network-host = プロキシホスト
network-host-hint = ホスト名またはIPアドレスのみを入力します。http://やポート番号は付けません(例:proxy.example.com)。空にするとプロキシを使用しません。
network-port = ポート番号
network-username = ユーザー名
network-password = パスワード
network-password-set = パスワードは保存済みです。変更しない場合は空欄のままにしてください。
network-password-not-set = パスワードは保存されていません。
network-remove-password = 保存されたパスワードを削除する
network-no-proxy = プロキシを使用しないアドレス
network-no-proxy-hint = 直接接続するホストを1行に1つ、またはカンマ区切りで入力します:ホスト名、ドメイン(.example.comはサブドメインも含む)、IPアドレス、範囲(10.0.0.0/8)、すべての場合は*。
# Messages of refused operations and settings. Each says what to do.
verbatim = { $text }
err-disk-full = ディスクがいっぱいのため、データを書き込めません(書きかけのデータは残っていません)。空き容量を確保してから、やり直してください。
err-internal-detail = 保存されているデータを読み取れません({ $detail })。ログを確認してください。
err-user-exists = ユーザー名「{ $name }」はすでに登録されています。別の名前を入力してください。
err-account-exists = アカウント名「{ $name }」はすでに登録されています。別の名前を入力してください。
err-api-token-exists = APIトークン名「{ $name }」はすでに登録されています。別の名前を入力してください。
err-submitter-exists = 送信者名「{ $name }」はすでに登録されています。別の名前を入力してください。
err-allow-entry-exists = { $cidr }はすでに許可アドレスに登録されています。
err-ca-exists = 証明書「{ $subject }」はすでに登録されています。
err-ca-text-too-large = PEMテキストが{ $limit }バイトを超えています。CA証明書を数件ずつ貼り付けてください。
err-too-many-cas = 信頼できるCA証明書は最大{ $limit }件です。不要なものを先に削除してください。
err-last-admin = 最後の管理者(Administrator)は削除することも、別の権限に変更することもできません。先に別の管理者を追加してください。
err-job-not-retryable = 再送できるのは、待機中・再送待ち・失敗のジョブだけです。送信ジョブ履歴を再読み込みして、ジョブの現在の状態を確認してください。
err-job-not-deletable = ジョブが存在しないか、送信中です。送信ジョブ履歴を再読み込みしてから、やり直してください。
err-unknown-role = 権限「{ $role }」は使用できません。Administrator、NetworkAdmin、GeneralUserのいずれかを選択してください。
err-unknown-provider = アカウント「{ $provider }」は使用できません。MicrosoftまたはGoogleを選択してください。
err-unknown-time-zone = タイムゾーン「{ $zone }」は使用できません。一覧から選択してください。
err-microsoft-off = OAuth 2.0(Microsoft)が使用する設定になっていません。先に基本設定の[編集]で使用する設定にしてください。
err-google-off = OAuth 2.0(Google)が使用する設定になっていません。先に基本設定の[編集]で使用する設定にしてください。
err-token-not-active = トークンの稼働状況が稼働中ではありません。先に認可処理を完了してください。
err-address = 「{ $address }」はメールアドレスではありません。user@example.comのようなアドレスを入力してください。
err-message-build = テストメールを作成できませんでした({ $detail })。宛先と送信者アドレスを確認してください。
err-ms-endpoint = Microsoft Entra ID認可サーバーのエンドポイント:{ $reason }
err-ms-endpoint-missing = Microsoft Entra ID認可サーバーのエンドポイント:https://login.microsoftonline.com/<テナント名>/oauth2/v2.0 の形式で入力してください。
err-endpoint-empty = 入力されていません。{ $example } のように入力してください。
err-endpoint-not-url = URLではありません({ $detail })。{ $example } のように入力してください。
err-endpoint-not-https = { $scheme }は使用できません。httpsのURLを、{ $example } のように入力してください。
err-endpoint-no-host = ホスト名がありません。{ $example } のように入力してください。
err-endpoint-credentials = ユーザー名やパスワードを含めることはできません。取り除いて入力してください。
err-endpoint-query = 「?」や「#」以降の部分を含めることはできません。{ $example } のように入力してください。
err-endpoint-path = パスは /oauth2/v2.0 で終わる必要があります(入力されたパス:'{ $path }')。{ $example } のように入力してください。
err-endpoint-no-tenant = テナント名がありません。/oauth2/v2.0 の前に、common、organizations、consumers、テナントIDまたはドメイン名を入れてください(例:{ $example })。
err-endpoint-tenant-segments = パスは /{"{"}テナント名{"}"}/oauth2/v2.0 の形式で、テナント名は1つだけにしてください(入力されたパス:'{ $path }'、例:{ $example })。
err-endpoint-bad-tenant = '{ $tenant }'はテナント名として使用できません。common、organizations、consumers、テナントID(00000000-0000-0000-0000-000000000000のようなGUID)、またはドメイン名(contoso.onmicrosoft.comなど)を入力してください。
err-ms-client-id-missing = クライアントID:Microsoft Entraで登録したアプリのアプリケーション(クライアント)IDを入力してください。
err-google-client-id-missing = クライアントID:Google CloudのOAuthクライアント(デスクトップアプリ)のクライアントIDを入力してください。
err-google-client-secret-missing = クライアントシークレット:Google CloudのOAuthクライアントのクライアントシークレットを入力してください。
err-client-id-spaces = クライアントID:空白を含めずに入力してください。
err-client-id-invalid = クライアントID:長すぎるか、制御文字が含まれています。正しいクライアントIDを入力してください。
err-smtp-host = SMTPサーバー:「{ $host }」はホスト名ではありません。smtp.office365.comのようなホスト名を入力してください。
err-smtp-port = ポート番号:1〜65535の数値を入力してください(STARTTLSは587、TLS(暗黙)は465)。
err-smtp-security = 接続の暗号化:STARTTLSまたはTLS(暗黙)を選択してください(暗号化しない接続は使用できません)。
err-sender = 送信者アドレス:「{ $sender }」はメールアドレスではありません。正しいメールアドレスを入力するか、空欄にしてください。
err-cidr-not-address = 「{ $text }」はIPアドレスでも範囲でもありません。192.0.2.10や192.0.2.0/24のように入力してください。
err-cidr-prefix = 「{ $text }」のプレフィックス長は0〜{ $max }で入力してください。
err-cidr-everything = すべてのアドレスを許可すると、hikyakuがオープンリレーになってしまいます。機器のアドレスを個別に入力してください。
err-proxy-host-scheme = プロキシホスト「{ $host }」:ホスト名またはIPアドレスのみを入力してください。http://やパスは付けません。
err-proxy-host-credentials = プロキシホスト「{ $host }」:認証情報は含めないでください。ユーザー名とパスワードの欄に入力してください。
err-proxy-host-port = プロキシホスト「{ $host }」:「:」が含まれています。ポート番号はホストの後ではなく、ポート番号の欄に入力してください。
err-proxy-host-invalid = プロキシホスト「{ $host }」:正しいホスト名ではありません。英数字、「-」、「.」を使い、空白を含めずに入力してください。
err-proxy-port = プロキシのポート番号「{ $port }」は使用できません。1〜65535の数値を入力してください(3128や8080がよく使われます)。
err-proxy-username = プロキシのユーザー名に「:」や制御文字は使用できません。ユーザー名のみを入力してください。
err-proxy-password = プロキシのパスワードに制御文字は使用できません。
err-proxy-password-without-user = ユーザー名なしでプロキシのパスワードが入力されています。ユーザー名も入力するか、両方とも空欄にしてください。
err-proxy-no-proxy-too-many = プロキシを使用しないアドレスが{ $count }件あります。登録できるのは{ $max }件までです。ドメイン(.example.com)や範囲(10.0.0.0/8)でまとめてください。
err-proxy-no-proxy-entry = プロキシを使用しないアドレス「{ $entry }」は使用できません。ホスト名、.example.comのようなドメイン、IPアドレス、10.0.0.0/8のような範囲、または*を入力してください。
err-ca-no-certificates = PEMテキストに証明書が見つかりません。-----BEGIN CERTIFICATE----- で始まるブロックを1つ以上貼り付けてください。
err-ca-pem = 証明書 #{ $index }:PEMテキストの形式が正しくありません({ $reason })。BEGINとENDの行を含め、ブロック全体を貼り付けてください。
err-ca-malformed = 証明書 #{ $index }:正しいX.509証明書ではありません({ $reason })。エクスポートしたCA証明書をそのまま貼り付け直してください。
err-ca-not-ca = 証明書 #{ $index }({ $subject })はCA証明書ではありません(basicConstraintsのCAが設定されていません)。サーバー自身の証明書ではなく、発行元CAの証明書を追加してください。
err-ca-expired = 証明書 #{ $index }({ $subject })は{ $date }に有効期限が切れています。CAの最新の証明書を入手してください(日付が誤っている場合は、本機の日付と時刻を確認してください)。
err-ca-not-yet-valid = 証明書 #{ $index }({ $subject })は{ $date }より前には有効ではありません。本機の日付と時刻を確認してください。
err-ca-other = この証明書は使用できません({ $detail })。
err-paste-empty = 何も入力されていません。認可コード、またはブラウザーに表示されたページのURL全体を貼り付けてください。
err-paste-too-long = 認可コードやそのURLとしては長すぎます。ブラウザーに表示されたページのURLだけを貼り付けてください。
err-paste-code-escape = コードに不正な%エスケープが含まれています。URLに表示されているとおりに貼り付けてください。
err-paste-no-code = URLにcode=の部分がありません。アクセスを許可したあとにブラウザーに表示されたページのURL全体、またはコードだけを貼り付けてください。
err-paste-empty-code = コードが空です。code=から次の&の前までの部分を貼り付けてください。
err-paste-code-too-long = 認可コードとしては長すぎます。code=から次の&の前までの部分だけを貼り付けてください。
err-paste-code-characters = Googleの認可コードに含まれない空白や文字が含まれています。余分な文字を含めずに貼り付け直してください。
err-paste-address-escape = URLに不正な%エスケープが含まれています。表示されているとおりに貼り付けてください。
err-setup-wrong-provider = このアカウントは{ $provider }のアカウントではありません。
err-setup-microsoft-off = 「OAuth 2.0(Microsoft)を使用する」がOFFです。先に基本設定でONにしてください。
err-setup-google-off = 「OAuth 2.0(Google)を使用する」がOFFです。先に基本設定でONにしてください。
err-setup-microsoft-client-id = 基本設定でクライアントIDを入力してください(Microsoft Entra管理センター → アプリの登録 → 対象のアプリ → アプリケーション(クライアント)ID)。
err-setup-google-client-id = 基本設定でクライアントIDを入力してください(Google Cloud → APIとサービス → 認証情報)。
err-setup-google-client-secret = 基本設定でクライアントシークレットを入力してください(Google Cloud → APIとサービス → 認証情報)。
err-setup-bad-url = 基本設定から作成したURLが使用できません({ $detail })。設定を確認してください。
err-setup-transport = HTTPS接続を準備できませんでした({ $detail })。CA証明書とプロキシの設定を確認してください。
err-tokens-no-account = アカウント{ $id }は存在しません。
err-tokens-not-authorized = 認可されていません(トークンの稼働状況:未登録)。先に認可処理を行ってください。
err-tokens-temporary = 現在プロバイダーに接続できません({ $detail })。ネットワークとプロキシの設定を確認してから、やり直してください。
err-tokens-provider = プロバイダーが要求を受け付けませんでした:{ $detail }
err-tokens-code-rejected = 認可コードが受け付けられませんでした。コードが誤っているか、使用済みか、有効期限が切れています(コードは数分間、1回だけ有効です)。新しいURLを取得して、認可をやりなおしてください。
err-tokens-state-mismatch = 貼り付けたURLは別の認可処理のものです(stateが一致しません)。最新のURLで表示されたページのURLを貼り付けるか、新しいURLを取得してください。
err-tokens-redirect-uri-mismatch = Googleがリダイレクト先を拒否しました(redirect_uri_mismatch)。OAuthクライアントのアプリケーションの種類は「デスクトップアプリ」である必要があります(Google Cloud → APIとサービス → 認証情報 → 認証情報を作成 → OAuthクライアントID → デスクトップアプリ)。そのクライアントのIDとシークレットを入力してください。
err-tokens-invalid-client = GoogleがクライアントIDまたはクライアントシークレットを受け付けません(invalid_client)。Google Cloud → APIとサービス → 認証情報から両方をコピーし直して、基本設定で保存してください。
err-tokens-access-denied = Googleの同意画面でアクセスが拒否されました(access_denied)。新しいURLを取得して、[許可]を選んでください。
err-tokens-no-pending = 処理中の認可はありません(完了したか、期限が切れたか、新しい認可に置き換えられました)。トークンの稼働状況を確認するか、最初からやり直してください。
err-api-json-content-type = 本文はContent-Type: application/jsonのJSONで送信してください。
err-api-json-body = JSONの本文が正しくありません:{ $detail }
err-api-microsoft-off = OAuth 2.0(Microsoft)が使用する設定になっていません。先に PUT /api/v1/oauth/microsoft で enabled=true にしてください。
err-api-google-off = OAuth 2.0(Google)が使用する設定になっていません。先に PUT /api/v1/oauth/google で enabled=true にしてください。
err-api-unknown-role = 権限「{ $role }」は使用できません。administrator、network_admin、general_userのいずれかを指定してください。
err-api-unknown-state = 状態「{ $state }」は使用できません。{ $states }のいずれかを指定してください。
# Stored status reasons and warnings (the library's English texts).
reason-verify-off = 証明書の検証がOFFです。通信は暗号化されますが、サーバーの正当性は確認されません。可能であれば「サーバー証明書を検証する」をONにしてください。
reason-skew-behind = 本機の時計がサーバーより{ $secs }秒遅れています。日付と時刻(またはNTPサーバー)を設定してください。証明書やトークンの確認に失敗するおそれがあります。
reason-skew-ahead = 本機の時計がサーバーより{ $secs }秒進んでいます。日付と時刻(またはNTPサーバー)を設定してください。証明書やトークンの確認に失敗するおそれがあります。
reason-tenant-not-found = テナントが見つかりません(HTTP { $code }、AADSTS90002)。テナントIDまたはドメイン名を確認してください。
reason-proxy-auth = プロキシが認証を求めています(HTTP 407)。プロキシの設定を確認してください。
reason-http-404 = サーバーがHTTP { $status }を返しました。URL(テナント名、ドメイン名、エンドポイントのパス)を確認してください。
reason-http-4xx = サーバーがHTTP { $status }を返しました。このプロバイダーの設定を確認してください。
reason-http-5xx = サーバーがHTTP { $status }を返しました。プロバイダー側の問題です。しばらくしてから再度お試しください。
reason-http-other = サーバーがHTTP { $status }を返しました。
reason-no-answer = { $target }から{ $secs }秒以内に応答がありません。ネットワーク、ファイアウォール、プロキシの設定を確認してください。
reason-dns = ホスト名'{ $host }'を解決できませんでした。DNSサーバーの設定を確認してください。
reason-proxy-failed = プロキシが接続を拒否したか、接続に失敗しました({ $detail })。プロキシの設定を確認してください。
reason-refused = { $target }への接続が拒否されました。接続先で何も待ち受けていないか、ファイアウォールが拒否しています。
reason-unreachable = { $target }に到達できません。ネットワークの設定(デフォルトゲートウェイ)とプロキシを確認してください。
reason-closed = { $target }との接続が予期せず切断されました。ファイアウォールやプロキシが妨げている可能性があります。
reason-connect-timeout = { $target }への接続がタイムアウトしました。ネットワーク、ファイアウォール、プロキシの設定を確認してください。
reason-connect-failed = { $target }に接続できませんでした({ $detail })。
reason-url-unusable = URL'{ $url }'は使用できません({ $detail })。
reason-request-failed = { $target }へのリクエストに失敗しました({ $detail })。
reason-via-proxy-credentials-refused = プロキシ{ $proxy }が認証情報を拒否しました(HTTP 407)。管理設定 → ネットワークでプロキシのユーザー名とパスワードを確認してください。
reason-via-proxy-credentials-missing = プロキシ{ $proxy }が認証情報を求めています(HTTP 407)。管理設定 → ネットワークでプロキシのユーザー名とパスワードを入力してください。
reason-via-proxy-refused = プロキシ{ $proxy }への接続が拒否されました。管理設定 → ネットワークでプロキシのホストとポート番号を確認し、プロキシが動作していることを確認してください。
reason-via-proxy-timeout = プロキシ{ $proxy }への接続がタイムアウトしました。管理設定 → ネットワークでプロキシのホストとポート番号を確認し、ファイアウォールも確認してください。
reason-via-proxy-dns = プロキシのホスト名'{ $host }'を解決できませんでした。管理設定 → ネットワークでプロキシホストを確認し、DNSサーバーの設定も確認してください。
reason-via-proxy-connect = プロキシ{ $proxy }に接続できませんでした({ $detail })。管理設定 → ネットワークでプロキシのホストとポート番号を確認してください。
reason-via-proxy-forbidden = プロキシ{ $proxy }が{ $target }への接続を拒否しました(HTTP 403など)。プロキシの管理者に許可を依頼するか、管理設定 → ネットワークでそのホストをプロキシを使用しないアドレスに追加してください。
reason-via-proxy-closed = プロキシ{ $proxy }が{ $target }へのトンネルを開く途中で接続を切断しました。管理設定 → ネットワークでプロキシのポート番号を確認してください(HTTPプロキシである必要があります)。
reason-via-proxy-other = プロキシ{ $proxy }経由での{ $target }への接続に失敗しました({ $detail })。管理設定 → ネットワークでプロキシの設定を確認してください。
reason-list = { $first } { $second }
reason-declined = ユーザーが拒否しました。新しいコードを取得してください。
reason-code-expired = ユーザーコードの有効期限が切れました。新しいコードを取得してください。
reason-endpoint-unreachable = トークンエンドポイントに接続できません。再試行しています。
reason-endpoint-unreachable-detail = トークンエンドポイントに接続できません。再試行しています({ $detail })。
reason-no-token-after-jump = 有効なアクセストークンがありません。システムの時刻が変更されたあと、トークンエンドポイントに接続できないため更新できませんでした。hikyakuは再試行を続け、接続できれば自動で稼働中に戻ります。ネットワークとプロキシの設定を確認してください(この状態が続く場合のみ、認可をやりなおしてください)。
reason-reauthorize = 再認可が必要です:{ $advice }
reason-reauthorize-error = 再認可が必要です({ $error }):{ $advice }
reason-aadsts-mfa = ユーザーが多要素認証(MFA)またはその登録を完了する必要があります。一度対話的にサインインしてから、認可をやりなおしてください。
reason-aadsts-expired = リフレッシュトークンの有効期限が切れました(長期間使われなかったか、付与の期限を過ぎました)。認可をやりなおして、新しいトークンを取得してください。
reason-aadsts-invalid-grant = 付与が無効か使用済みです(またはユーザーが取り消しました)。認可をやりなおしてください。
reason-aadsts-consent = 同意がありません。管理者がMicrosoft Entra管理センター(アプリの登録 → APIのアクセス許可)でSMTP.Sendのアクセス許可に同意してから、認可をやりなおしてください。
reason-aadsts-public-client = アプリの登録でデバイスコードフローが許可されていません。Microsoft Entra管理センターでアプリの登録 → 対象のアプリ → 認証を開き、「パブリック クライアント フローを許可する」を「はい」にしてください。
reason-aadsts-app-not-found = このテナントにアプリケーション(クライアントID)が見つかりません。クライアントIDと、エンドポイントのテナントがアプリを登録したテナントであることを確認してください(マルチテナントのアプリではcommon/organizationsを使います)。
reason-aadsts-other-tenant = サインインしたアカウントは別のテナントに属しています。このテナントのアカウントでサインインするか、マルチテナントのアプリでエンドポイントのテナントに'common'/'organizations'を使ってください。
reason-aadsts-tenant-not-found = テナントが見つかりません。Microsoft Entra ID認可サーバーのエンドポイントのテナント名の部分を確認してください。
reason-aadsts-revoked = 付与が取り消されたか、ユーザーのパスワードが変更またはリセットされました。認可をやりなおしてください。
reason-aadsts-pending = 認可処理中です。ユーザーがまだコードを入力していません。
reason-google-testing = OAuth同意画面のユーザーの種類が「外部」で公開ステータスが「テスト」のアプリでは、Googleはリフレッシュトークンを7日後に無効にします。ユーザーの種類を「内部」(Google Workspace)にするかアプリを公開してから、認可をやりなおしてください。
reason-advice-invalid-grant = リフレッシュトークンが取り消されたか、有効期限が切れました。認可をやりなおしてください。
reason-advice-google-invalid-client = GoogleがクライアントIDまたはクライアントシークレットを受け付けません。基本設定で両方を確認してください。
reason-advice-microsoft-invalid-client = MicrosoftがクライアントIDを受け付けません。クライアントIDと、アプリの登録で「パブリック クライアント フローを許可する」が「はい」になっていることを確認してください。
reason-advice-invalid-scope = 要求したアクセス許可はこのアプリでは許可されていません。アプリのAPIのアクセス許可を確認してください。
reason-advice-access-denied = 同意画面でアクセスが拒否されました。認可をやりなおして、アクセスを許可してください。
reason-advice-authorize-again = 認可をやりなおしてください。
seconds-signed = { $secs }秒
# Audit Log details (stored as a code with arguments) and action labels.
reason-audit-login = { $role ->
    [administrator] { role-administrator }
    [network_admin] { role-network_admin }
    [general_user] { role-general_user }
   *[other] { $role }
}としてログイン
reason-audit-logout = ログアウト
reason-audit-login-failed = ユーザー名またはパスワードが誤っています
reason-audit-login-throttled = 失敗が続いたため、ログインを一時的に拒否しました
reason-audit-setup = 最初の管理者を作成しました
reason-audit-user = { $name }
reason-audit-user-role = { $name }({ $role ->
    [administrator] { role-administrator }
    [network_admin] { role-network_admin }
    [general_user] { role-general_user }
   *[other] { $role }
})
reason-audit-basic-settings = { $provider ->
    [google] { provider-google }
   *[other] { provider-microsoft }
}: 使用={ $enabled ->
    [true] ON
   *[other] OFF
} 証明書の検証={ $verify_cert ->
    [true] ON
   *[other] OFF
} CNの検証={ $verify_cn ->
    [true] ON
   *[other] OFF
} エンドポイント={ $endpoint } クライアントID={ $client_id }{ $secret ->
    [changed] (クライアントシークレットを変更)
   *[other] {""}
}{ $tokens ->
    [discarded] (トークンを破棄)
   *[other] {""}
}
reason-audit-email-settings = { $provider ->
    [google] { provider-google }
   *[other] { provider-microsoft }
}: { $host }:{ $port } { $security ->
    [starttls] { smtp-starttls }
    [implicit] { smtp-implicit }
   *[other] { $security }
} 送信者={ $sender } 既定={ $default ->
    [true] はい
   *[other] いいえ
}
reason-audit-provider = { $provider ->
    [google] { provider-google }
   *[other] { provider-microsoft }
}
reason-audit-device-code = Microsoft: 新しいユーザーコードを要求しました
reason-audit-google-url = 認可用のURLを発行しました
reason-audit-google-code = 認可コードを受け付けました
reason-audit-google-code-refused = 認可コードを受け付けませんでした: { $error }
reason-audit-send-test = { $provider ->
    [google] { provider-google }
   *[other] { provider-microsoft }
}: 宛先 { $to }、ジョブ { $job }
reason-audit-job = ジョブ { $job }
reason-audit-submitter = { $name }
reason-audit-allowlist = { $cidr }
reason-audit-time-zone = { $zone }
reason-audit-ca = { $subject }({ $fingerprint })
reason-audit-proxy-off = プロキシを使用しない
reason-audit-proxy = プロキシ { $address } ユーザー名={ $user } パスワード={ $password ->
    [set] 保存済み
   *[other] なし
} 除外={ $no_proxy }
reason-audit-clock-jump = システム時刻が{ $secs }秒変化しました
audit-action-setup = 最初の管理者
audit-action-login = ログイン
audit-action-logout = ログアウト
audit-action-login_failed = ログイン失敗
audit-action-login_throttled = ログイン拒否(連続失敗)
audit-action-user_add = ユーザーの追加
audit-action-user_delete = ユーザーの削除
audit-action-api_token_add = APIトークンの作成
audit-action-oauth_basic_settings = 基本設定の保存
audit-action-email_settings = Eメール設定の保存
audit-action-oauth_connection_check = 接続の確認
audit-action-oauth_device_code = ユーザーコードの取得
audit-action-oauth_google_register = 認可用URLの発行
audit-action-oauth_google_authorized = 認可コードの受付
audit-action-oauth_google_code_refused = 認可コードの拒否
audit-action-send_test = テストメールの送信
audit-action-job_retry = ジョブの再送
audit-action-job_delete = ジョブの削除
audit-action-network_proxy = プロキシの保存
audit-action-display_time_zone = 表示タイムゾーンの保存
audit-action-submitter_add = SMTP送信者の追加
audit-action-submitter_delete = SMTP送信者の削除
audit-action-allowlist_add = 許可アドレスの追加
audit-action-allowlist_delete = 許可アドレスの削除
audit-action-ca_add = CA証明書の追加
audit-action-ca_delete = CA証明書の削除
audit-action-clock_jump = システム時刻の変化
reason-tls-unknown-issuer = 証明書が信頼されていません(発行者が不明)。CA証明書で発行元のCAを追加してください(TLSを検査するプロキシの場合は、そのCAも追加が必要です)。
reason-tls-expired = 証明書の有効期限が切れています。サーバー証明書を更新するか、本機の日付と時刻を確認してください。
reason-tls-expired-at = 証明書の有効期限が切れています(有効期限:{ $not_after }、本機の時計:{ $now })。サーバー証明書を更新するか、本機の日付と時刻を確認してください。
reason-tls-not-yet-valid = 証明書がまだ有効になっていません。本機の日付と時刻を確認してください。
reason-tls-not-yet-valid-at = 証明書がまだ有効になっていません(有効開始:{ $not_before }、本機の時計:{ $now })。本機の日付と時刻を確認してください。
reason-tls-wrong-name = 証明書はホスト{ $host }に対して有効ではありません(証明書の名前:{ $names })。サーバー名を確認するか、このホスト名を含む証明書を使用してください。
reason-tls-not-tls = サーバーがTLSで応答しませんでした。ポート番号(暗号化しないポートではないか)と、途中のプロキシを確認してください。
reason-tls-alert = サーバーがTLSハンドシェイクを中断しました(アラート:{ $alert })。TLS 1.2以降に対応していないか、クライアント証明書を要求している可能性があります。
reason-tls-cn-mismatch = 証明書のサブジェクトCN'{ $cn }'がホスト'{ $host }'と一致しません(「CNを検証項目に追加する」がONです)。ホスト名をCommon Nameとするサーバー証明書を使用するか、「CNを検証項目に追加する」をOFFにしてください。
reason-tls-no-cn = ホスト'{ $host }'と比較するサブジェクトCNが証明書にありません(「CNを検証項目に追加する」がONです)。ホスト名をCommon Nameとするサーバー証明書を使用するか、「CNを検証項目に追加する」をOFFにしてください。
reason-new-authorization-ended = 新しい認可は完了しませんでした:{ $reason } 現在の認可を引き続き使用しています。
reason-text = { $text }
reason-legacy = { $text }
reason-reauthorize-bare = 再認可が必要です
reason-access-denied = Googleの同意画面でアクセスが拒否されました(access_denied)。新しいURLを取得して、[許可]を選んでください。
reason-provider-error-advice-detail = { $error }:{ $advice }({ $detail })
reason-provider-error-advice = { $error }:{ $advice }
reason-provider-error-detail = { $error }:{ $detail }
reason-no-reason-given = 理由は示されていません
reason-device-code-rejected = 内部エラー:Microsoftがデバイスコードを受け付けませんでした。新しいコードを取得してください。
reason-no-refresh-token = プロバイダーがリフレッシュトークンを発行しませんでした。オフラインアクセスが許可されているか確認してください(Microsoft:offline_accessのアクセス許可、Google:Googleアカウントでhikyakuへのアクセス権を削除してから、もう一度認可)。
reason-tls-no-certificate = サーバーが証明書を提示しませんでした。
reason-tls-incompatible = サーバーは、受け入れ可能なTLSバージョンまたは暗号スイート(TLS 1.2以降)に対応していません:{ $detail }
reason-tls-misbehaved = サーバーがTLSプロトコルに違反しました({ $detail })。
reason-tls-error = TLSエラー:{ $detail }
reason-tls-wrong-name-bare = 証明書はこのホスト名に対して有効ではありません。
reason-tls-revoked = 証明書は失効しています。
reason-tls-bad-signature = 証明書の署名が無効です。
reason-tls-malformed = 証明書の形式が正しくありません。
reason-tls-critical-extension = 証明書に、解釈できない重要(critical)拡張が含まれています。
reason-tls-purpose = 証明書はTLSサーバー用ではありません(拡張キー使用法)。
reason-tls-rejected = 証明書が拒否されました:{ $detail }
# Job replies: what hikyaku writes into a job's last reply. The upstream
# server's reply is the argument $reply, shown as it came.
reason-upstream = { $reply }
reason-job-then = { $first } — { $then }
reason-job-waiting = { $provider }のアカウント({ $name })の再認可を待っています:{ $detail }
reason-job-wait-switched-off = アカウントがOFFになっています(基本設定)
reason-job-wait-not-registered = トークンの稼働状況が未登録です。認可処理を行ってください
reason-job-wait-authorizing = 認可処理中です
reason-job-wait-token-error = トークンの稼働状況がエラーです:{ $reason }
reason-job-wait-token-error-bare = トークンの稼働状況がエラーです
reason-job-no-account = 再認可を待っています:送信できるMicrosoftまたはGoogleのアカウントがありません(トークンの稼働状況が稼働中で有効なアカウントがありません)
reason-job-no-default = 稼働中のアカウントが複数あり、既定のアカウントがありません。Eメール設定で既定のアカウントを選んでください
reason-job-abandoned = 配信が{ $secs }秒を超えたため中断しました。再送します
reason-job-rate-limited = アカウントの送信レート上限(毎分{ $count }通)に達しました。{ $secs }秒待機します
reason-job-busy = アカウントの上流接続({ $count }本)がすべて使用中です。待機します
reason-job-all-refused = すべての宛先が拒否されました:{ $reply }
reason-job-connect-failed = { $detail }(接続時)— Eメール設定の[SMTPサーバー]と[ポート番号]、およびこの機器からそのサーバーに接続できること(ファイアウォール、プロキシ)を確認してください。
reason-job-transport = { $detail }({ $stage ->
    [connect] 接続時
    [tls] TLSハンドシェイク時
    [auth] 認証時
    [mail] MAIL FROM時
    [rcpt] RCPT TO時
    [data] DATA時
   *[other] メッセージ送信後
})
reason-job-store = 保存領域のエラー:{ $error }
reason-job-token-unavailable = アクセストークンを取得できません:{ $error }
reason-job-body-missing = 保存領域にメッセージ本文がありません
reason-job-tls-setup = TLSの設定に失敗しました:{ $error }
reason-job-fresh-token-refused = { $reply } — 更新したばかりのアクセストークンもプロバイダーに拒否されました。後で再送します
reason-job-refused-recipients = { $reply }(拒否された宛先:{ $list })
reason-job-gave-up = { $last }(送信を断念しました:{ $hours }時間以内に配信できませんでした)
reason-job-lease-expired = 配信が中断されました(リースの期限切れ)
reason-job-restarted = hikyakuの再起動により中断されました
reason-job-shutdown = 停止により中断されました。再送します
reason-smtp-advice-auth-disabled = このメールボックスまたはテナントでSMTP AUTHが無効です。Microsoft 365管理センター → ユーザー → アクティブなユーザー → (ユーザー) → メール → メールアプリの管理 で「認証済みSMTP」を有効にしてください(テナント全体では Set-TransportConfig -SmtpClientAuthenticationDisabled $false)。メッセージは待機して再送します。
reason-smtp-advice-send-as = このメールボックスはこの送信者として送信できません。アカウントのEメール設定の[送信者アドレス]を空にする(認可したメールボックスが使われます)か、メールボックスにこの送信者の「送信者として送信」権限を与えてください
reason-smtp-advice-quota = このメールボックスのプロバイダーの送信上限に達しました。メッセージは後で再送します

# Operations: the Portal's chart, the store size and the job history's CSV export
chart-title = 送信したメッセージ
chart-hourly-title = 時間ごとのメッセージ数（過去24時間）
chart-daily-title = 日ごとのメッセージ数（過去30日）
chart-bar = { $when }：送信済み { $sent } 件、再送待ち { $deferred } 件、失敗 { $failed } 件
chart-numbers = 数値を表示
chart-period = 期間
chart-total = 合計
chart-store-size = ストアのサイズ
jobs-export-csv = CSV で書き出す
job-id = ジョブ ID
job-envelope-from = エンベロープの送信者
job-reply-code = 応答コード
# ユーザー、パスワード、APIトークン
password-changed = パスワードを変更しました。ほかのセッションはログアウトしました。
password-title = パスワードの変更
password-intro = 現在のパスワードと、10文字以上の新しいパスワードを入力してください。ほかのログイン中のセッションは終了します。
password-current = 現在のパスワード
password-new = 新しいパスワード
password-confirm = 新しいパスワード(確認)
password-change = パスワードを変更
user-change-role = 権限を変更
user-reset-password = パスワードを設定
tokens-title = APIトークン
tokens-intro = スクリプトはAPIトークンをJSON APIのベアラートークンとして使用します。トークンは作成したユーザーに属し、そのユーザーの現在の権限を超えることはありません。ユーザーを削除するとトークンは無効になります。保存するのはトークンのハッシュだけです。トークンの値は作成時に一度だけ表示されます。
token-name = トークン名
token-user = ユーザー
token-expires = 有効期限
token-last-used = 最終使用
token-state = 状態
token-narrowed = トークン自体の権限
token-revoke = 無効にする
token-add = APIトークンを作成
token-expires-in = 有効期間
token-expires-in-hint = 数字と単位で入力します:90d(日)、12h(時間)、2w(週)。空欄の場合、期限はありません。
token-never = なし
token-never-used = 未使用
token-state-active = 有効
token-state-expired = 期限切れ
token-state-revoked = 無効
token-created-notice = APIトークンを作成しました。
token-created-once = このトークンを今すぐコピーしてください。表示されるのはこの一度だけです(hikyakuはハッシュだけを保存します)。
err-current-password = 現在のパスワードが正しくありません。
err-unknown-user = ユーザー「{ $name }」は存在しません。
err-token-name = APIトークン名は1〜64文字の英数字、ピリオド、ハイフン、アンダースコアで入力してください。
err-token-role-above-user = トークンの権限({ $role })はユーザーの権限({ $user_role })を超えられません。{ $user_role }以下を選択してください。
err-token-expires-in = 有効期間「{ $text }」は使用できません。90d(日)、12h(時間)、2w(週)のように数字と単位で、3650日以内で入力してください。期限なしの場合は空欄にしてください。
err-token-owner-missing = トークンが属するユーザーを--user NAMEで指定してください(管理者が1人ではないため、自動では決められません)。
err-api-token-missing = Authorizationヘッダーは「Bearer」に続けてAPIトークンを指定してください。
err-api-token-unknown = このAPIトークンは登録されていません。入力を誤ったか、作り直された可能性があります。管理者にトークンを依頼してください(管理 → ユーザー → APIトークン、またはhikyaku admin api-token)。
err-api-token-expired = APIトークン{ $name }は有効期限が切れています。管理者に新しいトークンを依頼してください。
err-api-token-revoked = APIトークン{ $name }は無効にされています(またはユーザーが削除されています)。管理者に新しいトークンを依頼してください。
audit-action-api_token_revoke = APIトークンの無効化
audit-action-user_role = ユーザー権限の変更
audit-action-user_password_reset = ユーザーのパスワード設定
audit-action-password_change = 自分のパスワードの変更
reason-audit-api-token = { $name }({ $role ->
    [administrator] { role-administrator }
    [network_admin] { role-network_admin }
    [general_user] { role-general_user }
   *[other] { $role }
}、ユーザー{ $user }、有効期限{ $expires })
reason-audit-user-role-change = { $name }:{ $old ->
    [administrator] { role-administrator }
    [network_admin] { role-network_admin }
    [general_user] { role-general_user }
   *[other] { $old }
} → { $role ->
    [administrator] { role-administrator }
    [network_admin] { role-network_admin }
    [general_user] { role-general_user }
   *[other] { $role }
}
reason-audit-password-reset = { $name }({ $sessions }件のセッションを終了)
reason-audit-password-change = { $name }(ほかの{ $sessions }件のセッションを終了)
reason-audit-password-change-refused = { $name }:現在のパスワードが正しくありませんでした
reason-tls-name-unlisted = { $target }の証明書はこのホスト名に対して有効ではありません。エンドポイントのホスト名を確認してください(既知のMicrosoftログインホスト以外では、証明書の名前は表示しません)。
reason-check-no-https-server = { $target }でHTTPSサーバーが応答しませんでした。エンドポイントのホスト名とポートを確認してください(既知のMicrosoftログインホスト以外では、これ以上の詳細は表示しません)。
reason-check-not-provider = { $target }は応答しましたが、Microsoft Entra IDの認可サーバーではありません。エンドポイントを確認してください(例:https://login.microsoftonline.com/common/oauth2/v2.0)。
reason-tls-unknown-issuer-google = 証明書が信頼されていません(発行者が不明)。管理者(Administrator)がCA証明書で発行元のCAを追加する必要があります(NetworkAdminが追加したCAはGoogleには適用されません。TLSを検査するプロキシのCAも管理者が追加してください)。
reason-tls-cn-mismatch-unlisted = 証明書のサブジェクトCNが{ $target }のホストと一致しません(「CNを検証項目に追加する」がONです)。ホスト名をCommon Nameとするサーバー証明書を使用するか、「CNを検証項目に追加する」をOFFにしてください(既知のMicrosoftログインホスト以外では、CNは表示しません)。
# Accounts: any number of sending accounts, routing and per-account limits
menu-accounts = 送信アカウント
accounts-intro = hikyaku が送信に使うすべてのアカウントです。メールは、送信者(SMTP 送信者・許可アドレス)に結び付けられたアカウント、なければエンベロープの送信者、次に From のアドレスを送信可能アドレスに含むアカウント、それもなければ既定のアカウントから送信されます。
account-add = アカウントの追加
account-edit = アカウントの編集
account-name = アカウント名
account-provider = プロバイダー
account-cloud = クラウド
account-kind = 認証情報の種類
account-send-as = 送信可能アドレス
account-limits = 制限
account-limits-value = { $rate }通/分、接続 { $connections }
account-limit-default = 既定値
account-disable = 使用しない
account-enable = 使用する
account-enabled = このアカウントを使用する
account-add-hint = ここでは、ユーザーがサインインしてメールボックスを認可するアカウント(マニュアルの手順:Microsoft はデバイスコード、Google は認可コード)を追加します。基本設定と認可は、追加後にそのアカウントの設定ページで行います。
account-cloud-hint = 各国のクラウドは、それぞれのサインイン・SMTP・Graph のホストを使います。以下の欄にはクラウドの値が表示されます。上書きする場合だけ変更し、空欄にするとクラウドの値に戻ります。
account-smtp-scope = SMTP スコープ(委任)
account-graph-host = Graph ホスト
account-overrides-hint = 認可サーバーのエンドポイントと SMTP スコープはクラウドに属します。どちらか(またはクラウド)を変更すると、このアカウントのトークンは破棄され、再度認可が必要です。
account-send-as-hint = アドレス(scan@example.com)またはドメイン全体(@example.com)を、カンマまたは改行で区切って入力します。送信者が一致するメールはこのアカウントから From を変えずに送信されます。空欄の場合、アドレスによる振り分けは行わず、From の確認はプロバイダーに任せます。
account-rate = 1分あたりの送信数
account-connections = 上流への同時接続数の上限
account-limits-hint = 空欄の場合は設定ファイルの既定値(delivery.rate_per_minute、delivery.connections_per_account)を使います。Exchange Online では、メールボックスあたり毎分30通、同時接続3までです。
account-delete-title = アカウントの削除
account-delete-waiting = このアカウントから送信を待っているジョブが { $count } 件あります。扱いを選択してください:
account-jobs-move = { $account } に移す
account-jobs-fail = 失敗にする(送信履歴に失敗として残ります)
account-delete-no-jobs = このアカウントを待っているジョブはありません。
cloud-worldwide = 全世界(Worldwide)
cloud-gcc_high = GCC High
cloud-dod = DoD
cloud-china = 中国(21Vianet)
credential-kind-delegated = 委任(ユーザーがサインイン)
credential-kind-microsoft_secret = アプリのみ:クライアントシークレット
credential-kind-microsoft_certificate = アプリのみ:証明書
credential-kind-google_service_account = アプリのみ:サービスアカウント
err-account-name = アカウント名:1~64文字で、数字だけにせず、前後に空白を入れずに入力してください。
err-unknown-account = アカウント「{ $name }」はありません。送信アカウントのページ(または hikyaku account list)から選択してください。
err-unknown-cloud = クラウド「{ $cloud }」は使用できません。Worldwide、GCC High、DoD、China から選択してください。
err-cloud-not-offered = クラウド「{ $cloud }」は Microsoft のアカウント専用です。Google のアカウントは Worldwide を使います。
err-unknown-credential-kind = 認証情報の種類「{ $kind }」は使用できません。delegated、microsoft_secret、microsoft_certificate、google_service_account から選択してください。
err-credential-kind-not-for = 認証情報の種類「{ $kind }」はこのプロバイダーでは使用できません。
err-mailbox-invalid = メールボックス:「{ $mailbox }」はメールアドレスではありません。
err-mailbox-missing = このアカウントが送信に使うメールボックスを入力してください。
err-send-as-invalid = 送信可能アドレス:「{ $entry }」はアドレス(name@example.com)でもドメイン(@example.com)でもありません。
err-send-as-too-many = 送信可能アドレスは { $limit } 件までです。ドメイン全体には @domain の形式を使ってください。
err-rate-invalid = 1分あたりの送信数:1~{ $max } の整数を入力するか、既定値を使う場合は空欄にしてください。
err-connections-invalid = 同時接続数:1~{ $max } の整数を入力するか、既定値を使う場合は空欄にしてください。
err-smtp-scope-invalid = SMTP スコープ:空白を含まない256文字以内で入力するか、クラウドの値を使う場合は空欄にしてください。
err-graph-host-invalid = Graph ホスト:「{ $host }」はホスト名ではありません。
err-jobs-waiting = このアカウントを待っているジョブが { $count } 件あります。別のアカウントに移すか、失敗にするかを選択してください。
err-move-to-same-account = 削除するアカウントにはジョブを移せません。別のアカウントを選択してください。
err-jobs-disposal = 待っているジョブの扱いを指定してください:jobs=move:ID(移動先アカウントの ID)または jobs=fail。
err-api-account-fixed = アカウントのプロバイダーと認証情報の種類は変更できません。新しいアカウントを追加してください。
reason-job-account-deleted = アカウント { $name } が削除されたため、待っていたジョブは失敗になりました
reason-audit-account-add = { $name }({ $provider }、{ $kind }、{ $cloud }):使用={ $enabled } 送信可能=[{ $send_as }] 送信数={ $rate } 接続数={ $connections }
reason-audit-account-update = { $name }({ $provider }、{ $cloud }):使用={ $enabled } 送信可能=[{ $send_as }] 送信数={ $rate } 接続数={ $connections }{ $tokens ->
    [discarded] { " " }(トークンを破棄)
   *[other] {""}
}
reason-audit-account-delete = { $name }({ $provider }):待機中のジョブ { $jobs } 件を { $disposal }
audit-action-account_add = アカウントの追加
audit-action-account_update = アカウントの保存
audit-action-account_delete = アカウントの削除
# App-only credentials (Microsoft client secret or certificate, Google service account)
app-title = アプリ専用の認証情報
app-intro-microsoft = アプリ自身がサインインします(クライアント資格情報フロー)。人によるサインインは不要で、期限切れになるリフレッシュトークンもありません。Entra にアプリを登録し、SMTP.SendAsApp(または RBAC for Applications のロール)を付与し、Exchange にサービスプリンシパルを登録してメールボックスへのアクセスを許可してください(README 参照)。
app-intro-google = Google Workspace のサービスアカウントがドメイン全体の委任により下のメールボックスとして送信します。この鍵は委任されたスコープでドメインのどのユーザーとしても動作します。厳重に保管し、可能なら他の方法を選んでください。
app-check = 確認
app-kind = 認証情報
app-kind-delegated = 委任(人がサインイン)
app-kind-microsoft_secret = クライアントシークレット
app-kind-microsoft_certificate = 証明書
app-kind-google_service_account = サービスアカウントの鍵
app-expires = 認証情報の有効期限
app-access-expires = アクセストークンの有効期限
app-mailbox = 送信に使うメールボックス
app-mailbox-hint = Microsoft:SMTP AUTH に使うメールボックス(サービスプリンシパルにアクセス許可が必要)。Google:サービスアカウントが代理する Workspace ユーザー。
app-scope = スコープ
app-cloud = クラウド
app-token-url = トークンエンドポイント
app-service-account = サービスアカウント
app-google-client-id = クライアント ID(ドメイン全体の委任用)
app-tenant = テナント(ディレクトリ ID またはドメイン)
app-secret = クライアントシークレット(値)
app-secret-set = クライアントシークレットは保存済みです(表示されません)。変更しない場合は空欄のままにしてください。
app-secret-not-set = クライアントシークレットは保存されていません。
app-secret-expires = シークレットの有効期限(Entra の表示どおり)
app-certificate-file = 秘密鍵付きの証明書(.pfx/.p12 または PEM)
app-certificate-password = PKCS#12 のパスワード
app-certificate-set = 証明書と秘密鍵は保存済みです(鍵は表示されません)。変更しない場合はファイルを選ばないでください。
app-certificate-not-set = 証明書は保存されていません。
app-key-file = サービスアカウントの JSON 鍵
app-key-set = サービスアカウントの鍵は保存済みです(表示されません)。変更しない場合はファイルを選ばないでください。
app-key-not-set = サービスアカウントの鍵は保存されていません。
app-google-delegation-hint = Google 管理コンソールで:セキュリティ → アクセスとデータ管理 → API の制御 → ドメイン全体の委任を管理 → 新しく追加。上に表示した数値のクライアント ID とスコープ https://mail.google.com/ を入力します。
app-err-not-certificate = ファイルが PEM(証明書と秘密鍵)でも PKCS#12(.pfx/.p12)でもありません。証明書を秘密鍵付きでエクスポートしてください。
app-err-pkcs12 = PKCS#12 ファイルを開けません。パスワードが違うか、ファイルが壊れています。
app-err-no-certificate = ファイルに証明書がありません。証明書と秘密鍵の両方が必要です。
app-err-no-private-key = ファイルに秘密鍵がありません。証明書を秘密鍵付きでエクスポートしてください(鍵付きの PFX、または PRIVATE KEY ブロックを含む PEM)。
app-err-encrypted-pem = 秘密鍵が暗号化されています。パスワード付きの PKCS#12(.pfx)ファイルか、暗号化されていない PEM の鍵をアップロードしてください。
app-err-not-rsa = 秘密鍵が 2048 ビット以上の RSA 鍵ではありません。Microsoft のクライアントアサーションと Google のサービスアカウントには RSA が必要です。
app-err-key-mismatch = 秘密鍵が証明書と対応していません。対になる組み合わせをアップロードしてください。
app-err-bad-certificate = 証明書を読み取れません。X.509 証明書をアップロードしてください。
app-err-not-json = サービスアカウントの鍵が JSON ではありません。Google Cloud → IAM と管理 → サービスアカウント →(対象のアカウント)→ 鍵 で JSON 形式の鍵を追加し、そのファイルをアップロードしてください。
app-err-not-service-account = 鍵ファイルがサービスアカウントの鍵ではありません("type" は "service_account" である必要があります)。サービスアカウントの JSON 鍵をダウンロードしてください。
app-err-missing-field = 鍵ファイルに "{ $field }" がありません。サービスアカウントの JSON 鍵を新しくダウンロードしてください。
app-err-token-uri = 鍵ファイルの token_uri は https:// のアドレスである必要があります。
app-err-sign = この鍵では JWT に署名できません。
app-err-not-app-only = このアカウントは人がサインインする(委任)アカウントです。アプリ専用の認証情報はアプリ専用アカウントに設定します。
app-err-kind = Microsoft のアカウントにはクライアントシークレットか証明書、Google のアカウントにはサービスアカウントの鍵を設定します。
app-err-tenant = テナントを入力してください。ディレクトリ(テナント)ID または確認済みドメインです(common、organizations、consumers は使えません)。
app-err-client-id = アプリケーション(クライアント)ID を入力してください。Entra 管理センター → アプリの登録 → 対象のアプリ。
app-err-secret-missing = クライアントシークレットの「値」を貼り付けてください(証明書とシークレット → クライアントシークレット)。
app-err-secret-is-id = これはクライアントシークレットの ID で、値ではありません。「値」の列をコピーしてください(作成直後にしか表示されません)。
app-err-expiry = 有効期限は YYYY-MM-DD の形式で入力してください。
app-err-certificate-missing = 秘密鍵付きの証明書(PEM または .pfx)をアップロードしてください。
app-err-key-missing = サービスアカウントの JSON 鍵をアップロードしてください。
app-err-mailbox = 送信に使うメールボックス(scan@example.com のようなアドレス)を入力してください。
app-err-upload = アップロードを読み取れませんでした。もう一度送信してください。
app-err-api-base64 = "{ $field }" は PEM テキストか、ファイルを base64 にしたものである必要があります。
reason-app-token-refused = プロバイダーがアプリ専用の認証情報を拒否しました({ $error }):{ $advice }({ $detail })
reason-app-token-refused-bare = プロバイダーがアプリ専用の認証情報を拒否しました({ $error }):{ $advice }
reason-app-ms-secret-wrong = クライアントシークレットが違います(AADSTS7000215)。シークレット ID ではなく「値」を貼り付けてください(Entra 管理センター → アプリの登録 → 対象のアプリ → 証明書とシークレット)
reason-app-ms-secret-expired = クライアントシークレットの有効期限が切れています(AADSTS7000222)。Entra で新しいクライアントシークレットを追加し、その値と有効期限をここに入力してください
reason-app-ms-certificate-unknown = 証明書がこのアプリにアップロードされていません(AADSTS700027)。アプリの登録の「証明書とシークレット → 証明書」に公開部分(.cer)をアップロードしてください
reason-app-ms-assertion-time = クライアントアサーションが有効な時間外です(AADSTS700024)。この機器の時計を確認してください(管理 → 日付/時刻)
reason-app-ms-app-not-found = このテナントにアプリケーションが見つかりません(AADSTS700016)。アプリケーション(クライアント)ID、テナント、クラウドを確認してください
reason-app-ms-tenant-not-found = テナントが見つかりません(AADSTS90002)。テナント ID またはドメインと、クラウド(GCC High、DoD、中国はそれぞれ別)を確認してください
reason-app-ms-scope = スコープが受け付けられません。アプリ専用のスコープはリソースの後に /.default を付けたものです(例:https://outlook.office365.com/.default)
reason-app-ms-other = アプリの登録のテナント、アプリケーション(クライアント)ID、認証情報を確認してください
reason-app-google-unauthorized-client = このサービスアカウントにドメイン全体の委任がありません(unauthorized_client)。管理コンソールで数値のクライアント ID(メールアドレスではなく)をスコープ https://mail.google.com/ とともに追加してください。新しい委任の反映には最大 24 時間かかります
reason-app-google-access-denied = 要求したスコープが委任されていません(access_denied)。サービスアカウントのクライアント ID に https://mail.google.com/ をそのまま委任してください
reason-app-google-invalid-user = メールボックスが委任を許可した Workspace ドメインのユーザーではありません(invalid_grant)。メールボックスを確認してください
reason-app-google-jwt-time = Google が JWT の時刻を拒否しました(invalid_grant)。この機器の時計を確認してください(管理 → 日付/時刻)
reason-app-google-bad-signature = Google が鍵を受け付けません(invalid_grant:署名が無効)。鍵が削除・無効化されたか、別のサービスアカウントのものです。新しい JSON 鍵を作成してアップロードしてください
reason-app-google-invalid-grant = Google が許可を拒否しました(invalid_grant)。メールボックス、時計、鍵を確認してください
reason-app-google-other = サービスアカウントの鍵とドメイン全体の委任を確認してください
reason-app-smtp-refused = メールサーバーがアプリ専用のトークンを拒否しました({ $reply }):{ $advice }
reason-app-smtp-not-granted = Exchange がこのアプリにメールボックスとしての送信を許可していません。サービスプリンシパルを登録し(New-ServicePrincipal。オブジェクト ID はアプリの登録ではなくエンタープライズアプリケーションのもの)、メールボックスへのアクセスを許可してください(Add-MailboxPermission -AccessRights FullAccess、または RBAC for Applications のロール)。SMTP.SendAsApp の管理者の同意も確認してください
reason-app-smtp-auth-disabled = メールボックスまたはテナントで SMTP AUTH が無効です。Microsoft 365 管理センターでメールボックスの「認証済み SMTP」を有効にするか、テナント全体は Set-TransportConfig -SmtpClientAuthenticationDisabled $false で有効にしてください
reason-app-smtp-send-as = メールボックスはこの From アドレスとして送信できません。送信者として送信の権限を付与するか(Add-RecipientPermission … -AccessRights SendAs)、メールボックス自身として送信してください
reason-app-credential-expired = { $what ->
    [certificate] 証明書
   *[secret] クライアントシークレット
}の有効期限が { $date } に切れました。Entra で新しいものを追加し、ここに入力してください
reason-app-credential-expires-soon = { $what ->
    [certificate] 証明書
   *[secret] クライアントシークレット
}の有効期限は { $date } です(あと { $days } 日)。期限前に Entra で新しいものを追加し、ここに入力してください
reason-audit-app-credentials = { $account } のアプリ専用の認証情報:{ $kind } client_id={ $client_id } mailbox={ $mailbox } expires={ $expires }
err-setup-app-credentials = アプリ専用の認証情報が揃っていません。シークレット、証明書またはサービスアカウントの鍵と、メールボックスを設定してください。
err-setup-app-key = 保存された鍵を使えません:{ $detail }
reason-app-incomplete = アプリ専用の認証情報が揃っていません。アカウントの「アプリ専用の認証情報」ページでシークレット、証明書またはサービスアカウントの鍵と、メールボックスを設定してください
# --- 初めての管理者:機器の接続先、設定チェックリスト、接続テスト、ヘルプ ---
nav-label = メインメニュー
lang-label = 言語
forbidden-needs-role = このページまたは操作には{ $role }の権限が必要です。必要な場合はAdministratorに依頼してください。
zone-m0800 = ロサンゼルス
zone-m0500 = ニューヨーク
zone-p0100 = ベルリン、パリ
zone-p0530 = コルカタ
zone-p0800 = シンガポール、上海
zone-p0900 = 東京、ソウル
zone-p1000 = シドニー
deleted = 削除しました。
email-tested = 接続テストに成功しました。
email-test-failed-notice = 接続テストに失敗しました。下の結果を確認してください。
saved-test-failed = 保存しました。ただし、この設定での接続テストに失敗しました。下の結果を確認してください。テストに成功するまでメールは送信待ちになります。
devices-title = 機器の接続設定
devices-intro = プリンター、スキャナー、アプリケーションはSMTPでhikyakuにメールを送ります。機器には次の設定を使用してください。
devices-loopback-warning = すべてのSMTP受付がこの機器のループバックアドレスで待ち受けています。LAN上の機器からは接続できません。ネットワークから受け付けるには、設定ファイルのintake.starttls_listen(例:"0.0.0.0:587"、intake.tls_certも必要)またはintake.listenを設定し、hikyakuを再起動してください。
devices-server = SMTPサーバー
devices-port = ポート番号
devices-security = 暗号化
devices-who = 送信できる機器
devices-loopback-only = この機器からのみ
devices-who-now = 現在許可されているもの:
devices-nobody = まだありません。SMTP送信ユーザーまたは許可アドレスを追加してください
devices-manage = 送信ユーザーと許可アドレスの管理
devices-printer = 例:プリンターのEメール(SMTP)設定
devices-printer-auth = 認証:送信ユーザーの名前とパスワードでSMTP認証(許可アドレスからは認証なし)
devices-sendmail-note = この機器では、hikyaku sendmailが標準入力からメールを受け取ります(cron用に/usr/sbin/sendmailとしてリンクします)。ほかのサーバーのメールシステムからhikyakuへ中継することもできます(Postfixの例):
devices-copy-hint = 各設定はボタンでコピーするか、テキストを選択してください。
devices-copy = コピー
devices-copied = コピーしました
devices-details = 機器の接続設定
devices-this-host = (この機器のアドレス)
devices-auth-or-allowlist = SMTP認証(送信ユーザー)または許可アドレス
devices-auth-after-starttls = STARTTLS後のSMTP認証、または許可アドレス
devices-allowlist-only = 許可アドレスのみ(TLSなし:ネットワーク越しの認証は不可)
devices-security-starttls-optional = なし、またはSTARTTLS
devices-security-plain = なし
devices-security-starttls = STARTTLS
devices-security-implicit = SSL/TLS
check-title = 設定チェックリスト
check-done = 完了
check-todo = 未完了
check-ca = 独自CAやTLS検査プロキシ用のCA証明書
check-ca-untrusted = 発行者が不明なため、サーバーの証明書が拒否されました
check-oauth = 少なくとも1つのアカウントでOAuth 2.0(トークンの稼働状況:稼働中)
check-email = Eメール設定のテスト(接続テスト)
check-submitter = SMTP送信ユーザーまたは許可アドレス
check-delivered = テストメールの送信完了
email-test = 接続テスト
email-test-hint = サーバーに接続し、アカウントの規則で証明書を検証し、EHLOと認証を行います。メールは送信しません。
email-test-server-said = サーバーの応答:
email-test-stale = このテストの後に設定が変更されました。もう一度テストしてください。
reason-email-test-ok = サーバーに接続し、TLSを検証して{ $mailbox }として認証しました
reason-email-test-ok-no-auth = サーバーに接続し、TLSを検証しました。アカウントに稼働中のトークンがないため、認証は試していません
reason-email-test-failed = テストを実行できませんでした:{ $detail }
reason-email-test-no-token = 接続しましたが、アクセストークンがありません:{ $detail }
reason-email-test-auth-refused = { $host }が認証(AUTH XOAUTH2)を拒否しました。アカウントの認可をやり直し、メールボックスでSMTP認証が許可されていることを確認してください
reason-email-test-refused = { $host }:{ $port }がコマンドを拒否しました。SMTPサーバー、ポート番号、暗号化を確認してください
reason-email-test-unknown-ca = { $host }の証明書が信頼されていません(発行者が不明)。CA証明書で発行元のCAを追加してください(TLSを検査するプロキシの場合も同様です)
reason-email-test-cn-mismatch = { $host }の証明書のCommon Nameがホスト名と一致しません(「CNを検証項目に追加する」がONです)。証明書に記載されたホスト名を使用するか、「CNを検証項目に追加する」をOFFにしてください
reason-email-test-tls = { $host }:{ $port }とのTLS接続に失敗しました。ポート番号と暗号化を確認してください(587はSTARTTLS、465はSSL/TLS)
reason-email-test-connect = { $host }:{ $port }に接続できません。SMTPサーバーとポート番号、およびこの機器からそのサーバーに接続できること(ファイアウォール、プロキシ)を確認してください
confirm-delete = 削除する
confirm-delete-submitter = この名前でログインする機器は送信できなくなります。
confirm-delete-allowlist = このアドレスの機器は、ログインなしでは送信できなくなります。
confirm-delete-ca = このCAが発行した証明書のサーバーは信頼されなくなり、再び追加するまで接続に失敗します。
confirm-delete-user = このユーザーはログインできなくなります。
confirm-delete-job = メールとその履歴が削除され、送信できなくなります。
allowlist-cidr = アドレス(CIDR)
ca-file = PEMファイルを選択(または下に貼り付け)
help-entra-link = Microsoft Entraへのhikyakuの登録方法
help-google-link = Google CloudでのOAuthクライアントの作成方法(手順1)
help-entra-title = Microsoft Entraにhikyakuを登録する
help-entra-intro = プリンターにはアプリ登録が組み込まれていますが、hikyakuにはテナントごとに1回、独自の登録が必要です。
help-entra-1 = Microsoft Entra管理センター → ID → アプリケーション → アプリの登録 → 新規登録。名前(例:hikyaku)を付け、「この組織ディレクトリのみに含まれるアカウント」を選び、リダイレクトURIは空のまま → 登録。
help-entra-2 = アプリケーション(クライアント)IDをコピーします。OAuth 2.0(Microsoft)の設定の[クライアントID]に入力します。
help-entra-3 = 認証 → 詳細設定 → パブリック クライアント フローを許可する:はい → 保存。これがないとデバイスコードでのサインインに失敗します(AADSTS7000218)。
help-entra-4 = APIのアクセス許可 → アクセス許可の追加 → 所属する組織で使用しているAPI → Office 365 Exchange Online → 委任されたアクセス許可 → SMTP.Send → 追加。続けて管理者の同意を与えます。
help-entra-5 = 送信するメールボックスでSMTP認証を許可します(Microsoft 365管理センター → ユーザー → アクティブなユーザー → 対象ユーザー → メール → メールアプリの管理)。許可しないとExchangeが535 5.7.139を返します。
help-entra-note = その後、基本設定の編集でエンドポイントとクライアントIDを入力し、OKを押してください。
help-google-title = Google CloudでOAuthクライアントを作成する(手順1)
help-google-intro = Google Workspaceの管理者アカウントで1回だけ行います。
help-google-1 = Google Cloudコンソールでプロジェクトを作成し、APIとサービス → 有効なAPIとサービス → Gmail API → 有効にする。
help-google-2 = OAuth同意画面:ユーザーの種類「内部」→ 作成。アプリ名と連絡先を入力し、スコープhttps://mail.google.com/を追加 → 保存。「外部」でテスト中のアプリは、トークンが7日で使えなくなります。
help-google-3 = 認証情報 → 認証情報を作成 → OAuthクライアントID。アプリケーションの種類は「デスクトップアプリ」(hikyakuのループバックへのリダイレクトを受け付けます)→ 作成。
help-google-4 = クライアントIDとクライアントシークレットを、OAuth 2.0(Google)の設定の基本設定の編集に入力し、OKを押してください。
help-google-note = その後、更新を押し、認可用情報を登録します(手順2)。
confirm-oauth-off = OAuth 2.0をOFFにすると、このアカウントのトークンは破棄されます(Googleの場合は失効もします)。再度認可が必要になり、それまでメールは送信待ちになります。
confirm-oauth-off-check = トークンを破棄してOAuth 2.0をOFFにする
connection-stale = このサーバーの接続状況の確認の後に設定が変更されました。[更新]を押して確認してください。

# Portal, test e-mail, SMTP host checks, CA upload
portal-credential = 資格情報の有効期限
reason-smtp-no-server = { $target }でTLSの使えるSMTPサーバーが応答しませんでした。SMTPサーバー、ポート番号、暗号化を確認してください(プロバイダーのSMTPホスト以外では、これ以上の詳細は表示しません)。
reason-smtp-tls-name-unlisted = { $target }の証明書はこのホスト名に対して有効ではありません。SMTPサーバーを確認してください(プロバイダーのSMTPホスト以外では、証明書の名前は表示しません)。
reason-smtp-tls-cn-mismatch-unlisted = 証明書のサブジェクトCNが{ $target }のホストと一致しません(「CNを検証項目に追加する」がONです)。ホスト名をCommon Nameとするサーバー証明書を使用するか、「CNを検証項目に追加する」をOFFにしてください(プロバイダーのSMTPホスト以外では、CNは表示しません)。
test-email-subject = hikyaku テストメール({ $account })
test-email-body = このテストメールは、hikyaku が { $account } を使い { $from } として送信しました。
test-email-body-works = このメールが読めれば、送信は正常に動作しています。
ca-file-any = 証明書ファイルを選択(PEMまたはDER。または下に貼り付け)
ca-err-upload = アップロードを読み取れませんでした(上限を超えている可能性があります)。ファイルを選択しなおすか、PEMテキストを貼り付けてください。
## HTTP transports (Microsoft Graph, Gmail API)
err-unknown-transport = 送信方式「{ $transport }」は不明です。smtp、graph(Microsoft)、gmail_api(Google)のいずれかを選んでください。
err-transport-not-for = 送信方式「{ $transport }」はこのプロバイダーでは使えません。Microsoft のアカウントは smtp か graph、Google のアカウントは smtp か gmail_api を使います。
reason-token-transport-changed = 送信方式が { $transport } に変わり、別の権限のトークンが必要です。このアカウントの認証をやり直してください。
reason-job-http-header-only = 送信しませんでした:To/Cc/Bcc に SMTP エンベロープにない宛先({ $list })があり、HTTP API ではその宛先にも届いてしまいます。それらのアドレスを外して送るか、このアカウントの送信方式を SMTP にしてください
reason-job-http-too-large = メッセージ({ $size } バイト)が { $api } の上限({ $max } バイト)を超えています。このようなメッセージには SMTP の送信方式を使ってください
reason-job-http-throttled = { $api } が HTTP { $status } を返し、{ $secs } 秒待つよう求めました。このメールボックスのメッセージはその間待機します
reason-job-http-forbidden = { $api } が要求を拒否しました({ $message })。アプリケーションに { $grant } を付与してください。付与後、メッセージは自動的に送信されます
reason-job-http-refused = { $api } がメッセージを拒否しました:{ $message }
reason-job-http-failed = { $api } に接続できませんでした:{ $detail }
reason-job-http-token-refused = { $api } が更新直後のアクセストークンを拒否しました({ $message })。トークンがこの API の権限のものか確認してください(送信方式を変えた後は認証をやり直します)
accounts-transport = 送信方式
accounts-transport-smtp = SMTP(XOAUTH2)
accounts-transport-graph = Microsoft Graph API(HTTPS)
accounts-transport-gmail_api = Gmail API(HTTPS)
accounts-transport-note = 人が認証したアカウントの送信方式を変えると、その認証は終了します。認証をやり直してください。

# HTTP transports: job history and large messages
job-provider-id = プロバイダーのメッセージ ID
reason-job-http-text-too-large = 添付ファイルを除いてもメッセージが { $size } バイトあり、{ $api } の 1 回のリクエストに収まりません(約 3 MB まで)。本文を小さくするか、このようなメッセージには SMTP 送信方式を使ってください
reason-job-http-unparsable = メッセージを MIME として読めないため、{ $api } で添付ファイルを分けて送れません。SMTP 送信方式で送ってください
# History at scale, queue and status in the terminal
err-api-before-unknown = ページの起点となるジョブ「{ $id }」がありません（削除または消去された可能性があります）。before を付けずに最初のページからやり直してください。
cli-queue-empty = メールキューは空です (Mail queue is empty)
cli-queue-col-id = ジョブID
cli-queue-col-size = サイズ
cli-queue-col-arrived = 受付日時
cli-queue-col-state = 状態
cli-queue-col-who = 送信者/宛先
cli-queue-total-one = -- { $kib } KiB、{ $n } 件のジョブ。
cli-queue-total-other = -- { $kib } KiB、{ $n } 件のジョブ。
cli-job-id = ジョブID:
cli-job-state = 状態:
cli-job-size = サイズ:
cli-job-bytes = { $n } バイト
cli-job-arrived = 受付日時:
cli-job-updated = 更新日時:
cli-job-next = 次回の試行:
cli-job-attempts = 試行回数:
cli-job-submitter = 送信元:
cli-job-sender = 送信者:
cli-job-recipients = 宛先:
cli-job-from = From:
cli-job-subject = 件名:
cli-job-account = アカウント:
cli-job-via = 送信に使用:
cli-job-reply = 最後の応答:
cli-status-accounts = アカウント
cli-status-no-accounts = (まだありません。リモートUIで設定してください)
cli-status-enabled = 有効
cli-status-disabled = 無効
cli-status-default = 既定
cli-status-mailbox = メールボックス:
cli-status-token = トークン:
cli-status-expires = 有効期限:
cli-status-credential = 資格情報:
cli-status-credential-expires = 有効期限 { $when }
cli-status-connection = 接続:
cli-status-checked = (確認 { $when })
cli-status-in = { $time }（{ $duration } 後）
cli-status-ago = { $time }（{ $duration } 前）
cli-status-queue = キュー
cli-status-last-error = 最後のエラー
cli-status-no-error = なし
cli-retried = ジョブ { $id } は{ $state }になり、今から送信を試みます
cli-retried-all-one = 再送待ちのジョブ { $n } 件を今から送信します
cli-retried-all-other = 再送待ちのジョブ { $n } 件を今から送信します
cli-deleted = ジョブ { $id } を削除しました

# HTTP transports: large messages over Graph for delegated accounts (Mail.ReadWrite)
accounts-graph-large = Graph で大きなメッセージを送る(Mail.ReadWrite も要求する)
accounts-graph-large-note = 人が認証する Microsoft アカウントで送信方式が Graph の場合の設定です。オフ(既定):トークンの権限は Mail.Send だけで、メッセージは約 3 MB までです。オン:認証で Mail.ReadWrite(メールボックスの読み書き。下書きに必要)も要求し、35 MB までのメッセージを下書き経由で送ります。変更すると認証は終了します。認証をやり直してください。
err-graph-large-not-for = Graph で大きなメッセージを送る設定は Microsoft のアカウント用です。Gmail API はこの設定なしで 35 MiB まで送れます。
reason-token-graph-large-on = Graph で大きなメッセージを送る設定がオンになりました。このアカウントは Mail.ReadWrite も要求しますが、これまでのトークンにはその権限がありません。このアカウントの認証をやり直してください(組織で必要な場合は、先に管理者が Mail.ReadWrite に同意してください)。
reason-token-graph-large-off = Graph で大きなメッセージを送る設定がオフになりました。Mail.ReadWrite を持つトークンは破棄しました。このアカウントの認証をやり直してください(Mail.Send のみ)。メッセージは約 3 MB までになります。
reason-token-graph-read-write-not-granted = 認証で Mail.ReadWrite が許可されなかったため(許可された権限:{ $granted })、{ $max } バイトを超えるメッセージは受け付けません。管理者が Microsoft Entra でアプリケーションの Mail.ReadWrite に同意してから、このアカウントの認証をやり直してください。

# Send Job History: account and day filters
jobs-filter-since = 開始日
jobs-filter-until = 終了日
jobs-filter-bad-day = 「{ $value }」は日付ではありません。YYYY-MM-DD の形式 (例: 2026-04-01) で入力してください。
jobs-filter-bad-account = 「{ $value }」はアカウントではありません。一覧から選んでください。
