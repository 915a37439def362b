//! The audit log: who did what, when, from where. Append-only. The action
//! is a code (`user_add`); the detail is a [`Reason`], stored as JSON and
//! rendered in the reader's language.

use sqlx::Row;

use super::{Result, Store};
use crate::i18n::Reason;

/// What an audit entry records. The codes are stored and returned by the
/// API as they are; pages show the label `audit-action-{code}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Setup,
    Login,
    Logout,
    LoginFailed,
    LoginThrottled,
    UserAdd,
    UserDelete,
    ApiTokenAdd,
    ApiTokenRevoke,
    UserRole,
    UserPasswordReset,
    PasswordChange,
    OauthBasicSettings,
    EmailSettings,
    OauthConnectionCheck,
    OauthDeviceCode,
    OauthGoogleRegister,
    OauthGoogleAuthorized,
    OauthGoogleCodeRefused,
    SendTest,
    JobRetry,
    JobDelete,
    NetworkProxy,
    DisplayTimeZone,
    SubmitterAdd,
    SubmitterDelete,
    AllowlistAdd,
    AllowlistDelete,
    CaAdd,
    CaDelete,
    ClockJump,
    AccountAdd,
    AccountUpdate,
    AccountDelete,
}

impl Action {
    pub const ALL: [Action; 34] = [
        Action::Setup,
        Action::Login,
        Action::Logout,
        Action::LoginFailed,
        Action::LoginThrottled,
        Action::UserAdd,
        Action::UserDelete,
        Action::ApiTokenAdd,
        Action::ApiTokenRevoke,
        Action::UserRole,
        Action::UserPasswordReset,
        Action::PasswordChange,
        Action::OauthBasicSettings,
        Action::EmailSettings,
        Action::OauthConnectionCheck,
        Action::OauthDeviceCode,
        Action::OauthGoogleRegister,
        Action::OauthGoogleAuthorized,
        Action::OauthGoogleCodeRefused,
        Action::SendTest,
        Action::JobRetry,
        Action::JobDelete,
        Action::NetworkProxy,
        Action::DisplayTimeZone,
        Action::SubmitterAdd,
        Action::SubmitterDelete,
        Action::AllowlistAdd,
        Action::AllowlistDelete,
        Action::CaAdd,
        Action::CaDelete,
        Action::ClockJump,
        Action::AccountAdd,
        Action::AccountUpdate,
        Action::AccountDelete,
    ];

    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Setup => "setup",
            Action::Login => "login",
            Action::Logout => "logout",
            Action::LoginFailed => "login_failed",
            Action::LoginThrottled => "login_throttled",
            Action::UserAdd => "user_add",
            Action::UserDelete => "user_delete",
            Action::ApiTokenAdd => "api_token_add",
            Action::ApiTokenRevoke => "api_token_revoke",
            Action::UserRole => "user_role",
            Action::UserPasswordReset => "user_password_reset",
            Action::PasswordChange => "password_change",
            Action::OauthBasicSettings => "oauth_basic_settings",
            Action::EmailSettings => "email_settings",
            Action::OauthConnectionCheck => "oauth_connection_check",
            Action::OauthDeviceCode => "oauth_device_code",
            Action::OauthGoogleRegister => "oauth_google_register",
            Action::OauthGoogleAuthorized => "oauth_google_authorized",
            Action::OauthGoogleCodeRefused => "oauth_google_code_refused",
            Action::SendTest => "send_test",
            Action::JobRetry => "job_retry",
            Action::JobDelete => "job_delete",
            Action::NetworkProxy => "network_proxy",
            Action::DisplayTimeZone => "display_time_zone",
            Action::SubmitterAdd => "submitter_add",
            Action::SubmitterDelete => "submitter_delete",
            Action::AllowlistAdd => "allowlist_add",
            Action::AllowlistDelete => "allowlist_delete",
            Action::CaAdd => "ca_add",
            Action::CaDelete => "ca_delete",
            Action::ClockJump => "clock_jump",
            Action::AccountAdd => "account_add",
            Action::AccountUpdate => "account_update",
            Action::AccountDelete => "account_delete",
        }
    }

    /// The action of a stored code; `None` for a code this version does not
    /// write (a newer version did).
    pub fn parse(code: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == code)
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub source: String,
    /// The action's code, as stored (also one this version does not know).
    pub action: String,
    pub detail: Reason,
}

impl Store {
    pub async fn audit(
        &self,
        at: i64,
        actor: &str,
        source: &str,
        action: Action,
        detail: &Reason,
    ) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            sqlx::query(q("INSERT INTO audit_log (at, actor, source, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)"))
        .bind(at)
        .bind(actor)
        .bind(source)
        .bind(action.as_str())
        .bind(detail.to_json())
        .execute(p)
        .await?;
            Ok(())
        })
    }

    /// Newest first. A detail written as prose by an older version reads
    /// as a `legacy` reason, shown as it is.
    pub async fn audit_entries(&self, limit: i64, offset: i64) -> Result<Vec<AuditEntry>> {
        crate::on_pool!(self, |p, q| {
            let rows = sqlx::query(q(
                "SELECT * FROM audit_log ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            ))
            .bind(limit)
            .bind(offset)
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    let detail: String = r.try_get("detail")?;
                    Ok(AuditEntry {
                        id: r.try_get("id")?,
                        at: r.try_get("at")?,
                        actor: r.try_get("actor")?,
                        source: r.try_get("source")?,
                        action: r.try_get("action")?,
                        detail: Reason::from_stored(&detail),
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::{Locale, Tr};

    #[tokio::test]
    async fn a_detail_is_stored_as_data_and_prose_of_an_older_version_is_shown_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let prose = "signed in as administrator";
        sqlx::query(
            "INSERT INTO audit_log (at, actor, source, action, detail) VALUES (1, 'admin', '127.0.0.1', 'login', ?1)",
        )
        .bind(prose)
        .execute(store.pool())
        .await
        .unwrap();
        let detail = Reason::new("audit-user").arg("name", "bob");
        store
            .audit(2, "admin", "127.0.0.1", Action::UserDelete, &detail)
            .await
            .unwrap();
        let entries = store.audit_entries(10, 0).await.unwrap();
        assert_eq!(entries[0].action, "user_delete");
        assert_eq!(entries[0].detail, detail);
        let stored: String = sqlx::query_scalar("SELECT detail FROM audit_log WHERE id = ?1")
            .bind(entries[0].id)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(stored, r#"{"code":"audit-user","args":{"name":"bob"}}"#);
        let old = &entries[1];
        assert_eq!(old.detail, Reason::legacy(prose));
        assert_eq!(old.detail.to_string(), prose);
        assert_eq!(old.detail.render(&Tr::new(Locale::Ja)), prose);
    }

    /// Details render from their code in the page's language; the English
    /// is the text the log and the API have always given.
    #[test]
    fn a_detail_renders_in_each_language_from_its_code() {
        let ja = Tr::new(Locale::Ja);
        for (code, en) in [
            ("audit-logout", "signed out"),
            ("audit-login-failed", "wrong user name or password"),
            ("audit-login-throttled", "login refused while throttled"),
            ("audit-setup", "first Administrator created"),
            ("audit-google-url", "authorization URL issued"),
            ("audit-google-code", "authorization code accepted"),
            ("audit-device-code", "microsoft: new user code requested"),
            ("audit-proxy-off", "proxy off"),
        ] {
            let r = Reason::new(code);
            assert_eq!(r.to_string(), en);
            assert!(!r.render(&ja).is_empty() && r.render(&ja) != en, "{code}");
        }
        let login = Reason::new("audit-login").arg("role", "administrator");
        assert_eq!(login.to_string(), "signed in as Administrator");
        assert_eq!(login.render(&ja), "Administratorとしてログイン");

        // User-supplied values are arguments, shown as they came.
        let r = Reason::new("audit-user-role")
            .arg("name", "bob")
            .arg("role", "general_user");
        assert_eq!(r.to_string(), "bob (general_user)");
        assert_eq!(r.render(&ja), "bob(GeneralUser)");

        let basic = |secret: &str, tokens: &str| {
            Reason::new("audit-basic-settings")
                .arg("provider", "microsoft")
                .arg("enabled", true)
                .arg("verify_cert", true)
                .arg("verify_cn", false)
                .arg("endpoint", "https://login.example/common/oauth2/v2.0")
                .arg("client_id", "id-1")
                .arg("secret", secret)
                .arg("tokens", tokens)
        };
        assert_eq!(
            basic("kept", "discarded").to_string(),
            "microsoft: enabled=true verify_cert=true verify_cn=false \
             endpoint=https://login.example/common/oauth2/v2.0 client_id=id-1 (tokens discarded)"
        );
        assert_eq!(
            basic("changed", "kept").to_string(),
            "microsoft: enabled=true verify_cert=true verify_cn=false \
             endpoint=https://login.example/common/oauth2/v2.0 client_id=id-1 client_secret=(changed)"
        );
        let text = basic("changed", "discarded").render(&ja);
        assert_eq!(
            text,
            "Microsoft: 使用=ON 証明書の検証=ON CNの検証=OFF \
             エンドポイント=https://login.example/common/oauth2/v2.0 クライアントID=id-1\
             (クライアントシークレットを変更)(トークンを破棄)"
        );

        let proxy = Reason::new("audit-proxy")
            .arg("address", "proxy.example:3128")
            .arg("user", "alice")
            .arg("password", "not-set")
            .arg("no_proxy", "-");
        assert_eq!(
            proxy.to_string(),
            "proxy proxy.example:3128 user=alice password=not set no_proxy=-"
        );
        assert!(
            !proxy.render(&ja).contains("not set"),
            "{}",
            proxy.render(&ja)
        );

        let jump = Reason::new("audit-clock-jump").arg("secs", "+7200");
        assert_eq!(jump.to_string(), "+7200 s");
        assert!(jump.render(&ja).contains("+7200秒"), "{}", jump.render(&ja));
    }

    #[test]
    fn every_action_has_a_label_in_each_language_and_parses_back() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            let key = format!("audit-action-{}", action.as_str());
            for locale in [Locale::En, Locale::Ja] {
                let label = Tr::new(locale).try_t(&key);
                assert!(
                    label.as_deref().is_some_and(|l| !l.is_empty()),
                    "{key} in {locale:?}"
                );
            }
        }
        assert_eq!(Action::parse("newer_action"), None);
    }
}
