//! The token service in-process against fakecloud: Microsoft device flow,
//! Google code + PKCE (paste and loopback), refresh, rotation, single-flight,
//! failures, restart.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fakecloud::{FakeCloud, HttpFault, Options};
use hikyaku::clock::{OffsetClock, SharedClock};
use hikyaku::config::GoogleConfig;
use hikyaku::connection::ConnectionStatus;
use hikyaku::provider::Provider;
use hikyaku::secrets::MasterKey;
use hikyaku::store::Store;
use hikyaku::store::accounts::{Account, BasicSettings};
use hikyaku::tls::TlsPolicy;
use hikyaku::tokens::{TokenService, TokensError, parse_pasted_code};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use testkit::eventually;

const MAILBOX: &str = "printer@contoso.example";
const GMAIL: &str = "scanner@example.com";

struct Env {
    cloud: FakeCloud,
    store: Store,
    key: Arc<MasterKey>,
    clock: Arc<OffsetClock>,
    google: GoogleConfig,
    cas: Vec<CertificateDer<'static>>,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new(opts: Options) -> Env {
        hikyaku::tls::install_crypto_provider();
        let cloud = FakeCloud::start(opts).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let cas = vec![CertificateDer::from_pem_slice(cloud.ca_pem().as_bytes()).unwrap()];
        let google = GoogleConfig {
            auth_url: cloud.google_auth_url(),
            token_url: cloud.google_token_url(),
            revoke_url: cloud.google_revoke_url(),
            discovery_url: format!("{}/.well-known/openid-configuration", cloud.base_url()),
            redirect_host: "127.0.0.1".into(),
        };
        Env {
            cloud,
            store,
            key: Arc::new(MasterKey::ephemeral()),
            clock: Arc::new(OffsetClock::default()),
            google,
            cas,
            _dir: dir,
        }
    }

    fn service(&self) -> TokenService {
        let clock: SharedClock = self.clock.clone();
        TokenService::new(
            self.store.clone(),
            self.key.clone(),
            clock,
            self.google.clone(),
            Arc::new(RwLock::new(self.cas.clone())),
        )
    }

    async fn microsoft(&self) -> i64 {
        let a = self.store.account_for(Provider::Microsoft).await.unwrap();
        let s = BasicSettings {
            enabled: true,
            verify_cert: true,
            verify_cn: true,
            endpoint: Some(self.cloud.entra_endpoint("common")),
            client_id: Some(self.cloud.options().ms_client_id.clone()),
            client_secret: None,
        };
        self.store
            .save_basic_settings(a.id, &s, true, 0)
            .await
            .unwrap();
        a.id
    }

    async fn google_with_secret(&self, secret: &str) -> i64 {
        let a = self.store.account_for(Provider::Google).await.unwrap();
        let sealed = self
            .key
            .seal_str(&format!("account:{}:client_secret", a.id), secret)
            .unwrap();
        let s = BasicSettings {
            enabled: true,
            verify_cert: true,
            verify_cn: false,
            endpoint: None,
            client_id: Some(self.cloud.options().google_client_id.clone()),
            client_secret: Some(sealed),
        };
        self.store
            .save_basic_settings(a.id, &s, true, 0)
            .await
            .unwrap();
        a.id
    }

    async fn google(&self) -> i64 {
        let secret = self.cloud.options().google_client_secret.clone();
        self.google_with_secret(&secret).await
    }

    async fn account(&self, id: i64) -> Account {
        self.store.account(id).await.unwrap()
    }

    /// Waits until the token status is `status` (panics after `within`).
    async fn wait_status(&self, id: i64, status: &str, within: Duration) -> Account {
        eventually(within, &format!("token status {status}"), async || {
            let a = self.account(id).await;
            if a.token_status == status {
                Ok(a)
            } else {
                Err(format!("{:?} ({:?})", a.token_status, a.token_reason))
            }
        })
        .await
    }

    /// Microsoft device flow to Active.
    async fn authorize_microsoft(&self, svc: &TokenService) -> i64 {
        let id = self.microsoft().await;
        let code = svc.start_device_authorization(id).await.unwrap();
        self.cloud
            .approve_user_code(&code.user_code, MAILBOX)
            .unwrap();
        self.wait_status(id, "active", Duration::from_secs(5)).await;
        id
    }

    /// Google consent + paste to Active.
    async fn authorize_google(&self, svc: &TokenService) -> i64 {
        let id = self.google().await;
        let auth = svc.google_authorization_url(id).await.unwrap();
        let redirect = self.cloud.google_consent(&auth.url, GMAIL).unwrap();
        svc.google_submit_code(id, &redirect).await.unwrap();
        id
    }

    async fn sealed_refresh_token(&self, id: i64) -> String {
        let blob = self
            .store
            .sealed_secrets(id)
            .await
            .unwrap()
            .refresh_token
            .unwrap();
        self.key
            .open_string(&format!("account:{id}:refresh_token"), &blob)
            .unwrap()
    }

    fn http(&self) -> reqwest::Client {
        let policy = TlsPolicy {
            extra_cas: self.cas.clone(),
            ..TlsPolicy::default()
        };
        hikyaku::http::client(&policy, Duration::from_secs(10)).unwrap()
    }
}

fn fast() -> Options {
    Options {
        device_poll_interval_secs: 1,
        ..Options::default()
    }
}

// ---------------------------------------------------------------- Microsoft

#[tokio::test]
async fn microsoft_device_flow_becomes_active_within_two_intervals() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.microsoft().await;
    let code = svc.start_device_authorization(id).await.unwrap();
    assert!(code.message.contains(&code.user_code));
    assert!(code.verification_uri.ends_with("/devicelogin"));
    assert_eq!(code.interval, 1);
    assert_eq!(env.account(id).await.token_status, "authorizing");
    assert_eq!(
        svc.pending_device_code(id).await.unwrap(),
        Some(code.clone())
    );
    let approved = Instant::now();
    env.cloud
        .approve_user_code(&code.user_code, MAILBOX)
        .unwrap();
    let a = env.wait_status(id, "active", Duration::from_secs(2)).await;
    assert!(approved.elapsed() <= Duration::from_millis(2500));
    assert_eq!(a.mailbox.as_deref(), Some(MAILBOX));
    assert_eq!(a.identity_verified, Some(true));
    assert!(a.has_refresh_token && !a.has_authorization && a.authorized_at.is_some());
    assert_eq!(svc.pending_device_code(id).await.unwrap(), None);
    let t = svc.access_token(id).await.unwrap();
    assert_eq!(t.mailbox, MAILBOX);
    assert!(!t.token.is_empty());
    assert_eq!(env.cloud.refresh_count(), 0);
    // The device code request asked for the seed's scopes, with the client id in the body.
    let reqs = env.cloud.requests();
    let dc = reqs
        .iter()
        .find(|r| r.path.ends_with("/devicecode"))
        .unwrap();
    let scope = &dc.form.iter().find(|(k, _)| k == "scope").unwrap().1;
    assert!(
        scope.contains("https://outlook.office.com/SMTP.Send") && scope.contains("offline_access")
    );
}

#[tokio::test]
async fn check_connection_starts_the_device_authorization() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.microsoft().await;
    let report = svc.check_connection(id).await.unwrap();
    assert_eq!(
        report.status,
        ConnectionStatus::Successful,
        "{:?}",
        report.reason
    );
    let a = env.account(id).await;
    assert_eq!(a.connection_status, "successful");
    assert_eq!(a.token_status, "authorizing");
    let code = svc
        .pending_device_code(id)
        .await
        .unwrap()
        .expect("a code after the check");
    // A second check keeps the same code.
    svc.check_connection(id).await.unwrap();
    assert_eq!(
        svc.pending_device_code(id)
            .await
            .unwrap()
            .unwrap()
            .user_code,
        code.user_code
    );

    let gid = env.google().await;
    let report = svc.check_connection(gid).await.unwrap();
    assert_eq!(
        report.status,
        ConnectionStatus::Successful,
        "{:?}",
        report.reason
    );
}

#[tokio::test]
async fn microsoft_declined_sets_error() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.microsoft().await;
    let code = svc.start_device_authorization(id).await.unwrap();
    env.cloud.decline_user_code(&code.user_code).unwrap();
    let a = env.wait_status(id, "error", Duration::from_secs(3)).await;
    assert!(a.token_reason.unwrap().to_string().contains("declined"));
    assert!(!a.has_authorization);
    assert!(matches!(
        svc.access_token(id).await,
        Err(TokensError::NotAuthorized)
    ));
}

#[tokio::test]
async fn microsoft_expired_code_then_a_new_code_works() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.microsoft().await;
    svc.start_device_authorization(id).await.unwrap();
    env.cloud.expire_device_codes();
    let a = env.wait_status(id, "error", Duration::from_secs(3)).await;
    assert!(
        a.token_reason.unwrap().to_string().contains("expired"),
        "expired reason"
    );
    let code = svc.start_device_authorization(id).await.unwrap();
    env.cloud
        .approve_user_code(&code.user_code, MAILBOX)
        .unwrap();
    env.wait_status(id, "active", Duration::from_secs(3)).await;
}

#[tokio::test]
async fn microsoft_slow_down_is_honoured() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.microsoft().await;
    env.cloud.slow_down_next_polls(1);
    let code = svc.start_device_authorization(id).await.unwrap();
    env.cloud
        .approve_user_code(&code.user_code, MAILBOX)
        .unwrap();
    env.wait_status(id, "active", Duration::from_secs(10)).await;
    let polls = env.cloud.device_poll_times();
    assert_eq!(polls.len(), 2, "one slowed poll, then success");
    let gap = polls[1] - polls[0];
    assert!(
        gap >= Duration::from_millis(5950),
        "slow_down adds 5 s to the 1 s interval: {gap:?}"
    );
}

#[tokio::test]
async fn no_poll_is_faster_than_the_interval() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.microsoft().await;
    let code = svc.start_device_authorization(id).await.unwrap();
    eventually(Duration::from_secs(10), "three polls", async || {
        env.cloud.device_poll_times().len() >= 3
    })
    .await;
    env.cloud
        .approve_user_code(&code.user_code, MAILBOX)
        .unwrap();
    env.wait_status(id, "active", Duration::from_secs(3)).await;
    let polls = env.cloud.device_poll_times();
    assert!(polls.len() >= 3);
    for w in polls.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(950),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[tokio::test]
async fn restart_mid_poll_resumes_the_device_authorization() {
    let env = Env::new(fast()).await;
    let id = env.microsoft().await;
    let first = env.service();
    let code = first.start_device_authorization(id).await.unwrap();
    eventually(Duration::from_secs(10), "the first poll", async || {
        !env.cloud.device_poll_times().is_empty()
    })
    .await;
    drop(first);
    let second = env.service();
    assert_eq!(
        second
            .pending_device_code(id)
            .await
            .unwrap()
            .unwrap()
            .user_code,
        code.user_code
    );
    second.resume();
    env.cloud
        .approve_user_code(&code.user_code, MAILBOX)
        .unwrap();
    env.wait_status(id, "active", Duration::from_secs(3)).await;
    assert_eq!(second.access_token(id).await.unwrap().mailbox, MAILBOX);
}

#[tokio::test]
async fn refresh_happens_before_expiry() {
    // 62 s tokens: valid for >60 s only for the first 2 s.
    let env = Env::new(Options {
        access_token_lifetime_secs: 62,
        ..fast()
    })
    .await;
    let svc = env.service();
    let id = env.authorize_microsoft(&svc).await;
    let first = svc.access_token(id).await.unwrap();
    assert_eq!(env.cloud.refresh_count(), 0);
    // About time: the token ages past the minute that must remain.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let second = svc.access_token(id).await.unwrap();
    assert_eq!(env.cloud.refresh_count(), 1);
    assert_ne!(first.token, second.token);
    assert_eq!(second.mailbox, MAILBOX);
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let env = Env::new(Options {
        access_token_lifetime_secs: 61,
        ..fast()
    })
    .await;
    let svc = env.service();
    let id = env.authorize_microsoft(&svc).await;
    // About time: the token ages past the minute that must remain.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.access_token(id).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for c in calls {
        tokens.push(c.await.unwrap().unwrap().token);
    }
    assert_eq!(env.cloud.refresh_count(), 1);
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn rotated_refresh_token_survives_restart() {
    let env = Env::new(fast()).await;
    let id;
    let old_rt;
    {
        let svc = env.service();
        id = env.authorize_microsoft(&svc).await;
        old_rt = env.sealed_refresh_token(id).await;
        svc.force_refresh(id).await.unwrap();
    }
    let rotated = env.sealed_refresh_token(id).await;
    assert_ne!(old_rt, rotated, "Microsoft rotates the refresh token");
    let svc = env.service();
    svc.force_refresh(id).await.unwrap();
    assert_eq!(env.cloud.refresh_count(), 2);
    assert_eq!(env.account(id).await.token_status, "active");
    // The old refresh token is refused by the provider.
    let resp = env
        .http()
        .post(format!("{}/token", env.cloud.entra_endpoint("common")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", env.cloud.options().ms_client_id.as_str()),
            ("refresh_token", old_rt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("invalid_grant"));
}

#[tokio::test]
async fn revoked_grant_requires_reauthorization() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.authorize_microsoft(&svc).await;
    env.cloud.revoke_grants(MAILBOX);
    let err = svc.force_refresh(id).await.unwrap_err();
    assert!(
        matches!(err, TokensError::ReauthorizationRequired(_)),
        "{err}"
    );
    assert!(!err.is_temporary());
    let a = env.account(id).await;
    assert_eq!(a.token_status, "error");
    let reason = a.token_reason.unwrap().to_string();
    assert!(reason.starts_with("re-authorization required"), "{reason}");
    assert!(reason.contains("password"), "AADSTS50173 advice: {reason}");
    // No further calls to the provider while in Error.
    assert!(matches!(
        svc.access_token(id).await,
        Err(TokensError::ReauthorizationRequired(_))
    ));
}

#[tokio::test]
async fn token_endpoint_failure_keeps_active_with_warning_and_recovers() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.authorize_microsoft(&svc).await;
    env.cloud.set_token_endpoint_fault(HttpFault::Status(500));
    let err = svc.force_refresh(id).await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    let a = env.account(id).await;
    assert_eq!(a.token_status, "active");
    assert_eq!(
        a.token_warning.map(|w| w.to_string()).as_deref(),
        Some("token endpoint unreachable, retrying")
    );
    env.cloud.set_token_endpoint_fault(HttpFault::Down);
    assert!(svc.force_refresh(id).await.unwrap_err().is_temporary());
    env.cloud.set_token_endpoint_fault(HttpFault::None);
    svc.force_refresh(id).await.unwrap();
    let a = env.account(id).await;
    assert_eq!(a.token_status, "active");
    assert_eq!(a.token_warning, None);
}

#[tokio::test]
async fn clock_jump_refreshes_active_accounts() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let id = env.authorize_microsoft(&svc).await;
    let before = svc.access_token(id).await.unwrap();
    env.clock.jump(time::Duration::days(3));
    svc.on_clock_jump().await;
    assert_eq!(env.cloud.refresh_count(), 1);
    let after = svc.access_token(id).await.unwrap();
    assert_ne!(before.token, after.token);
    assert_eq!(env.account(id).await.token_status, "active");
}

// ---------------------------------------------------------------- Google

#[tokio::test]
async fn google_consent_then_paste_whole_url() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.google().await;
    let auth = svc.google_authorization_url(id).await.unwrap();
    assert!(auth.redirect_uri.starts_with("http://127.0.0.1:"));
    let url = url::Url::parse(&auth.url).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["redirect_uri"], auth.redirect_uri);
    assert!(q["scope"].contains("https://mail.google.com/"));
    assert!(q["state"].len() >= 16);
    assert_eq!(env.account(id).await.token_status, "authorizing");
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    assert!(
        redirect.contains("%2F"),
        "codes carry an escaped slash: {redirect}"
    );
    svc.google_submit_code(id, &format!("  {redirect}\n"))
        .await
        .unwrap();
    let a = env.account(id).await;
    assert_eq!(a.token_status, "active");
    assert_eq!(a.mailbox.as_deref(), Some(GMAIL));
    assert_eq!(svc.access_token(id).await.unwrap().mailbox, GMAIL);
    // The exchange sent secret and verifier in the body.
    let reqs = env.cloud.requests();
    let ex = reqs.iter().find(|r| r.path == "/token").unwrap();
    let has = |k: &str| ex.form.iter().any(|(fk, _)| fk == k);
    assert!(has("client_secret") && has("code_verifier") && has("redirect_uri"));
}

#[tokio::test]
async fn google_bare_code_reused_and_expired_codes() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.google().await;
    let auth = svc.google_authorization_url(id).await.unwrap();
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    let code = parse_pasted_code(&redirect).unwrap().code;
    svc.google_submit_code(id, &code).await.unwrap();
    assert_eq!(env.account(id).await.token_status, "active");

    // The same code again, for a new authorization: used.
    svc.google_authorization_url(id).await.unwrap();
    let err = svc.google_submit_code(id, &code).await.unwrap_err();
    assert!(matches!(err, TokensError::CodeRejected), "{err}");
    assert!(err.to_string().contains("get a new URL"));

    // An expired code.
    let auth = svc.google_authorization_url(id).await.unwrap();
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    env.cloud.expire_google_codes();
    let err = svc.google_submit_code(id, &redirect).await.unwrap_err();
    assert!(matches!(err, TokensError::CodeRejected), "{err}");

    // Garbage.
    let err = svc
        .google_submit_code(id, "http://127.0.0.1:1/?state=x")
        .await
        .unwrap_err();
    assert!(matches!(err, TokensError::Pasted(_)), "{err}");
}

#[tokio::test]
async fn google_wrong_state_wrong_secret_and_denied() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.google().await;
    let auth = svc.google_authorization_url(id).await.unwrap();
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    let state = parse_pasted_code(&redirect).unwrap().state.unwrap();
    let forged = redirect.replace(&format!("state={state}"), "state=forged");
    let err = svc.google_submit_code(id, &forged).await.unwrap_err();
    assert!(matches!(err, TokensError::StateMismatch), "{err}");

    let denied = env.cloud.google_deny(&auth.url).unwrap();
    let err = svc.google_submit_code(id, &denied).await.unwrap_err();
    assert!(matches!(err, TokensError::AccessDenied), "{err}");

    let id = env.google_with_secret("wrong-secret").await;
    let auth = svc.google_authorization_url(id).await.unwrap();
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    let err = svc.google_submit_code(id, &redirect).await.unwrap_err();
    assert!(matches!(err, TokensError::InvalidClient), "{err}");
    assert!(err.to_string().contains("Client Secret"));
}

#[tokio::test]
async fn google_pkce_verifier_mismatch_is_refused() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.google().await;
    let auth = svc.google_authorization_url(id).await.unwrap();
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    // Tamper with the stored verifier.
    let aad = format!("account:{id}:authorization");
    let blob = env
        .store
        .sealed_secrets(id)
        .await
        .unwrap()
        .authorization
        .unwrap();
    let mut pending: serde_json::Value =
        serde_json::from_str(&env.key.open_string(&aad, &blob).unwrap()).unwrap();
    pending["verifier"] = serde_json::json!("x".repeat(64));
    let blob = env.key.seal_str(&aad, &pending.to_string()).unwrap();
    env.store
        .set_authorization(id, Some(&blob), "authorizing", None)
        .await
        .unwrap();
    let err = svc.google_submit_code(id, &redirect).await.unwrap_err();
    assert!(matches!(err, TokensError::CodeRejected), "{err}");
    assert_ne!(env.account(id).await.token_status, "active");
}

#[tokio::test]
async fn google_loopback_listener_completes_without_paste() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.google().await;
    let auth = svc.google_authorization_url(id).await.unwrap();
    assert!(auth.loopback_listening);
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    let browser = reqwest::Client::builder().build().unwrap();
    // A stray request (favicon) does not end the listener.
    let stray = browser
        .get(format!("{}/favicon.ico", auth.redirect_uri))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status().as_u16(), 404);
    let page = browser.get(&redirect).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("close this window"));
    let a = env.account(id).await;
    assert_eq!(a.token_status, "active");
    assert_eq!(a.mailbox.as_deref(), Some(GMAIL));
    // The listener is gone after completing.
    eventually(Duration::from_secs(2), "the listener closed", async || {
        browser.get(&redirect).send().await.is_err()
    })
    .await;
}

/// Only Google's own redirect (with the pending authorization's `state`)
/// can end an authorization at the loopback listener: a bare
/// `?error=access_denied` from any local process changes nothing.
#[tokio::test]
async fn google_loopback_listener_needs_the_state_to_end_an_authorization() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.google().await;
    let auth = svc.google_authorization_url(id).await.unwrap();
    assert!(auth.loopback_listening);
    let browser = reqwest::Client::builder().build().unwrap();
    for forged in ["?error=access_denied", "?error=access_denied&state=guessed"] {
        let r = browser
            .get(format!("{}{forged}", auth.redirect_uri))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{forged}");
        assert!(r.text().await.unwrap().contains("state"), "{forged}");
        let a = env.account(id).await;
        assert_eq!(
            a.token_status, "authorizing",
            "{forged} ended the authorization"
        );
    }
    // Google's real answer still completes it.
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    let page = browser.get(&redirect).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(env.account(id).await.token_status, "active");

    // A refusal that carries the right state does end a new authorization.
    let auth = svc.google_authorization_url(id).await.unwrap();
    let state = url::Url::parse(&auth.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let r = browser
        .get(format!(
            "{}?error=access_denied&state={state}",
            auth.redirect_uri
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("denied"));
    let a = env.account(id).await;
    assert_eq!(a.token_status, "active", "the working grant stays");
    assert!(a.token_warning.is_some(), "the ended authorization is said");
}

#[tokio::test]
async fn google_refresh_and_disable_revokes_and_clears() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.authorize_google(&svc).await;
    let rt = env.sealed_refresh_token(id).await;
    svc.force_refresh(id).await.unwrap();
    assert_eq!(env.cloud.refresh_count(), 1);
    assert_eq!(
        env.sealed_refresh_token(id).await,
        rt,
        "Google keeps its refresh token"
    );
    svc.disable(id).await.unwrap();
    let a = env.account(id).await;
    assert_eq!(a.token_status, "not_registered");
    assert!(!a.has_refresh_token && a.mailbox.is_none());
    let revoked = env
        .cloud
        .requests()
        .into_iter()
        .any(|r| r.path == "/revoke" && r.form.iter().any(|(k, v)| k == "token" && *v == rt));
    assert!(revoked, "the grant was revoked at Google");
    assert!(matches!(
        svc.access_token(id).await,
        Err(TokensError::NotAuthorized)
    ));
    // The refresh token no longer works at Google either.
    let resp = env
        .http()
        .post(env.cloud.google_token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", env.cloud.options().google_client_id.as_str()),
            (
                "client_secret",
                env.cloud.options().google_client_secret.as_str(),
            ),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn secrets_never_appear_in_debug_output() {
    let env = Env::new(fast()).await;
    let svc = env.service();
    let gid = env.google().await;
    let auth = svc.google_authorization_url(gid).await.unwrap();
    let state = url::Url::parse(&auth.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let redirect = env.cloud.google_consent(&auth.url, GMAIL).unwrap();
    let pasted = parse_pasted_code(&redirect).unwrap();
    svc.google_submit_code(gid, &redirect).await.unwrap();
    let token = svc.access_token(gid).await.unwrap();
    let rt = env.sealed_refresh_token(gid).await;
    let mid = env.microsoft().await;
    let code = svc.start_device_authorization(mid).await.unwrap();
    let text = format!("{svc:?} {token:?} {auth:?} {pasted:?} {code:?}");
    for secret in [
        token.token.as_str(),
        rt.as_str(),
        state.as_str(),
        pasted.code.as_str(),
        code.user_code.as_str(),
    ] {
        assert!(
            !text.contains(secret),
            "a secret leaked into Debug output: {text}"
        );
    }
}

#[tokio::test]
async fn keep_alive_refreshes_near_expiry_and_when_idle_for_a_week() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.authorize_google(&svc).await;
    // Fresh hour-long token, refreshed just now: nothing to do.
    svc.keep_alive_once().await;
    assert_eq!(env.cloud.refresh_count(), 0);
    // Idle for 8 days (wall clock): refreshed although the token is "valid".
    env.clock.jump(time::Duration::days(8));
    svc.keep_alive_once().await;
    assert_eq!(env.cloud.refresh_count(), 1);
    assert_eq!(env.account(id).await.token_status, "active");

    let env = Env::new(Options {
        access_token_lifetime_secs: 120,
        ..Options::default()
    })
    .await;
    let svc = env.service();
    env.authorize_google(&svc).await;
    // Less than 5 minutes left: refreshed ahead of time.
    svc.keep_alive_once().await;
    assert_eq!(env.cloud.refresh_count(), 1);
}

#[tokio::test]
async fn google_invalid_grant_after_a_week_hints_at_testing_apps() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.authorize_google(&svc).await;
    env.cloud.revoke_grants(GMAIL);
    env.clock.jump(time::Duration::days(7));
    let err = svc.force_refresh(id).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("re-authorization required"), "{text}");
    assert!(
        text.contains("Testing") && text.contains("Internal"),
        "{text}"
    );
}

#[tokio::test]
async fn settings_reset_stops_handing_out_cached_tokens() {
    let env = Env::new(Options::default()).await;
    let svc = env.service();
    let id = env.authorize_google(&svc).await;
    svc.access_token(id).await.unwrap();
    // The settings page changes the client id: the store resets the tokens.
    env.google().await;
    assert!(matches!(
        svc.access_token(id).await,
        Err(TokensError::NotAuthorized)
    ));
}
