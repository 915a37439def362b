//! Delivery in-process against fakecloud's Exchange and Gmail SMTP: envelope,
//! From rewrite, content fidelity, temporary and permanent failures, token
//! refresh and re-authorization, 5.7.139, Gmail's 334 challenge, implicit
//! TLS, the CN check, the rate limit and the worker loop.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fakecloud::{CertMode, FakeCloud, HttpFault, Options, SmtpFault, SmtpStage};
use hikyaku::clock::{Clock, OffsetClock, SharedClock};
use hikyaku::config::{DeliveryConfig, GoogleConfig};
use hikyaku::delivery::{Delivery, Outcome, rewrite_from};
use hikyaku::provider::Provider;
use hikyaku::queue::{Job, JobFilter, JobStore as _, NewJob};
use hikyaku::secrets::MasterKey;
use hikyaku::store::Store;
use hikyaku::store::accounts::{BasicSettings, EmailSettings};
use hikyaku::tokens::TokenService;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use testkit::eventually;
use tokio_util::sync::CancellationToken;

const MAILBOX: &str = "printer@contoso.example";
const GMAIL: &str = "scanner@example.com";
const DEVICE: &str = "mfp-3f@printers.local";

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    Exchange,
    Gmail,
    GmailImplicit,
}

struct Env {
    cloud: FakeCloud,
    store: Store,
    svc: TokenService,
    delivery: Delivery,
    clock: Arc<OffsetClock>,
    account: i64,
    mailbox: &'static str,
    _dir: tempfile::TempDir,
}

fn config() -> DeliveryConfig {
    DeliveryConfig {
        connect_timeout_secs: 2,
        command_timeout_secs: 3,
        ..DeliveryConfig::default()
    }
}

impl Env {
    async fn new(flavor: Flavor) -> Env {
        Self::with(flavor, Options::default(), None, config()).await
    }

    /// `tls_after`: (verify certificate, verify CN) switched on after the
    /// authorization, which runs with verification matching `opts.cert` (the
    /// token endpoint of a CN-mismatch or untrusted fakecloud would fail the
    /// same checks).
    async fn with(
        flavor: Flavor,
        opts: Options,
        tls_after: Option<(bool, bool)>,
        cfg: DeliveryConfig,
    ) -> Env {
        let verify_for_authorization = opts.cert != CertMode::Untrusted;
        hikyaku::tls::install_crypto_provider();
        let cloud = FakeCloud::start(Options {
            device_poll_interval_secs: 1,
            ..opts
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let cas = vec![CertificateDer::from_pem_slice(cloud.ca_pem().as_bytes()).unwrap()];
        let extra = Arc::new(RwLock::new(cas));
        let key = Arc::new(MasterKey::ephemeral());
        let clock = Arc::new(OffsetClock::default());
        let shared: SharedClock = clock.clone();
        let google = GoogleConfig {
            auth_url: cloud.google_auth_url(),
            token_url: cloud.google_token_url(),
            revoke_url: cloud.google_revoke_url(),
            discovery_url: format!("{}/.well-known/openid-configuration", cloud.base_url()),
            redirect_host: "127.0.0.1".into(),
        };
        let svc = TokenService::new(
            store.clone(),
            key.clone(),
            shared.clone(),
            google,
            extra.clone(),
        );
        let (account, mailbox, port, security) = match flavor {
            Flavor::Exchange => {
                let a = store.account_for(Provider::Microsoft).await.unwrap();
                let s = BasicSettings {
                    enabled: true,
                    verify_cert: verify_for_authorization,
                    verify_cn: false,
                    endpoint: Some(cloud.entra_endpoint("common")),
                    client_id: Some(cloud.options().ms_client_id.clone()),
                    client_secret: None,
                };
                store.save_basic_settings(a.id, &s, true, 0).await.unwrap();
                (a.id, MAILBOX, cloud.exchange_smtp_addr().port(), "starttls")
            }
            Flavor::Gmail | Flavor::GmailImplicit => {
                let a = store.account_for(Provider::Google).await.unwrap();
                let sealed = key
                    .seal_str(
                        &format!("account:{}:client_secret", a.id),
                        &cloud.options().google_client_secret,
                    )
                    .unwrap();
                let s = BasicSettings {
                    enabled: true,
                    verify_cert: verify_for_authorization,
                    verify_cn: false,
                    endpoint: None,
                    client_id: Some(cloud.options().google_client_id.clone()),
                    client_secret: Some(sealed),
                };
                store.save_basic_settings(a.id, &s, true, 0).await.unwrap();
                if flavor == Flavor::Gmail {
                    (a.id, GMAIL, cloud.gmail_smtp_addr().port(), "starttls")
                } else {
                    (a.id, GMAIL, cloud.gmail_smtps_addr().port(), "implicit")
                }
            }
        };
        store
            .save_email_settings(
                account,
                &EmailSettings {
                    smtp_host: "localhost".into(),
                    smtp_port: port,
                    smtp_security: security.into(),
                    sender: None,
                    is_default: true,
                },
                0,
            )
            .await
            .unwrap();
        let delivery = Delivery::new(store.clone(), svc.clone(), shared, cfg);
        let env = Env {
            cloud,
            store,
            svc,
            delivery,
            clock,
            account,
            mailbox,
            _dir: dir,
        };
        env.authorize().await;
        if let Some((verify_cert, verify_cn)) = tls_after {
            let a = env.store.account(env.account).await.unwrap();
            let s = BasicSettings {
                enabled: true,
                verify_cert,
                verify_cn,
                endpoint: a.endpoint,
                client_id: a.client_id,
                client_secret: None,
            };
            env.store
                .save_basic_settings(env.account, &s, false, 0)
                .await
                .unwrap();
        }
        env
    }

    /// Runs the account's authorization flow against fakecloud to Active.
    async fn authorize(&self) {
        if self.mailbox == MAILBOX {
            let code = self
                .svc
                .start_device_authorization(self.account)
                .await
                .unwrap();
            self.cloud
                .approve_user_code(&code.user_code, MAILBOX)
                .unwrap();
        } else {
            let auth = self
                .svc
                .google_authorization_url(self.account)
                .await
                .unwrap();
            let redirect = self.cloud.google_consent(&auth.url, GMAIL).unwrap();
            self.svc
                .google_submit_code(self.account, &redirect)
                .await
                .unwrap();
        }
        eventually(Duration::from_secs(8), "the account Active", async || {
            let a = self.store.account(self.account).await.unwrap();
            // Until the new authorization is done: the status may have
            // stayed Active beside it, with the old grant.
            if a.token_status == "active" && !a.has_authorization {
                Ok(())
            } else {
                Err(format!("not active: {a:?}"))
            }
        })
        .await;
    }

    async fn enqueue(&self, rcpt: &[&str], body: &[u8]) -> String {
        let job = NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: None,
            submitter: "mfp".into(),
            source: "smtp".into(),
            mail_from: DEVICE.into(),
            rcpt_to: rcpt.iter().map(|s| s.to_string()).collect(),
            header_from: Some(DEVICE.into()),
            subject: Some("Scan".into()),
            body: body.to_vec().into(),
        };
        self.store.enqueue(&job, self.clock.unix()).await.unwrap();
        job.id
    }

    /// Claims the next job whatever its due time (tests skip the backoff).
    async fn claim(&self) -> Job {
        let later = self.clock.unix() + 30 * 86_400;
        self.store
            .claim_due_job(later, later + 600)
            .await
            .unwrap()
            .expect("a job to claim")
    }

    async fn deliver_next(&self) -> Outcome {
        let job = self.claim().await;
        self.delivery.deliver_one(job).await
    }

    /// Delivers due jobs (notices included) until `id` had its attempt.
    async fn deliver_job(&self, id: &str) -> Outcome {
        for _ in 0..5 {
            let job = self.claim().await;
            let mine = job.id == id;
            let o = self.delivery.deliver_one(job).await;
            if mine {
                return o;
            }
        }
        panic!("job {id} was not claimed");
    }

    async fn job(&self, id: &str) -> Job {
        self.store.job(id).await.unwrap()
    }
}

fn simple(subject: &str) -> Vec<u8> {
    format!(
        "From: \"Scanner 3F\" <{DEVICE}>\r\nTo: boss@contoso.example\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

fn deferred_reply(o: &Outcome) -> &str {
    match o {
        Outcome::Deferred { reply, .. } => reply,
        other => panic!("expected Deferred, got {other:?}"),
    }
}

#[tokio::test]
async fn delivers_with_mailbox_envelope_rewritten_from_and_intact_content() {
    let env = Env::new(Flavor::Exchange).await;
    // 8-bit UTF-8 text, a leading dot, a multipart body with a base64 attachment.
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "From: \"Scanner 3F\" <{DEVICE}>\r\nTo: boss@contoso.example\r\nSubject: =?UTF-8?B?44K544Kt44Oj44Oz?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(
        "スキャンしました。\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n".as_bytes(),
    );
    body.extend_from_slice(b"--b1\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\n\r\n");
    for i in 0..200 {
        body.extend_from_slice(
            format!(
                "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZUR{i:04}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"--b1--\r\n");
    let id = env
        .enqueue(&["boss@contoso.example", "team@contoso.example"], &body)
        .await;
    let outcome = env.deliver_next().await;
    let Outcome::Sent { reply } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(reply.starts_with("250 2.0.0 OK"), "{reply}");
    let inbox = env.cloud.inbox();
    assert_eq!(inbox.len(), 1);
    let m = &inbox[0];
    assert_eq!(m.mail_from, MAILBOX);
    assert_eq!(m.auth_user, MAILBOX);
    assert_eq!(
        m.rcpt_to,
        vec![
            "boss@contoso.example".to_owned(),
            "team@contoso.example".to_owned()
        ]
    );
    // Exactly the rewritten message: no extra blank line, dots intact.
    let expected = rewrite_from(&body, MAILBOX, true).into_owned();
    assert_eq!(m.data, expected);
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap();
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Scanner 3F"));
    assert_eq!(from.address(), Some(MAILBOX));
    let reply_to = parsed.reply_to().unwrap().first().unwrap();
    assert_eq!(reply_to.address(), Some(DEVICE));
    assert_eq!(parsed.subject(), Some("スキャン"));
    // The body after the header block is byte-for-byte the original's.
    let tail = |b: &[u8]| b[b.windows(4).position(|w| w == b"\r\n\r\n").unwrap()..].to_vec();
    assert_eq!(tail(&m.data), tail(&body));
    let job = env.job(&id).await;
    assert_eq!(job.state, "sent");
    assert_eq!(job.last_reply.as_deref(), Some(reply.as_str()));
    assert!(
        env.store.job_body(&id).await.is_err(),
        "body deleted once sent"
    );
}

#[tokio::test]
async fn temporary_451_defers_then_delivers_after_the_fault_clears() {
    let env = Env::new(Flavor::Exchange).await;
    let id = env
        .enqueue(&["boss@contoso.example"], &simple("retry"))
        .await;
    env.cloud.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::EndOfData,
        code: 451,
        text: "4.3.0 Mail server temporarily rejected message".into(),
    });
    let before = env.clock.unix();
    let o = env.deliver_next().await;
    let Outcome::Deferred {
        reply,
        next_attempt_at,
    } = &o
    else {
        panic!("{o:?}")
    };
    assert!(
        reply.starts_with("451 4.3.0 Mail server temporarily"),
        "{reply}"
    );
    assert!(
        (before + 60..=before + 80).contains(next_attempt_at),
        "first retry after about a minute: {next_attempt_at} vs {before}"
    );
    let job = env.job(&id).await;
    assert_eq!(job.state, "deferred");
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_reply.as_deref(), Some(reply.as_str()));
    env.cloud.set_smtp_fault(SmtpFault::None);
    assert!(matches!(env.deliver_next().await, Outcome::Sent { .. }));
    assert_eq!(env.job(&id).await.attempts, 2);
    assert_eq!(env.cloud.inbox().len(), 1);
}

#[tokio::test]
async fn temporary_failure_past_max_age_fails_with_the_last_reply() {
    let env = Env::new(Flavor::Exchange).await;
    let id = env.enqueue(&["boss@contoso.example"], &simple("old")).await;
    env.clock.jump(time::Duration::hours(121));
    env.cloud.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::Rcpt,
        code: 452,
        text: "4.5.3 Too many recipients".into(),
    });
    let o = env.deliver_next().await;
    let Outcome::Failed { reply } = &o else {
        panic!("{o:?}")
    };
    assert!(
        reply.starts_with("452 4.5.3 Too many recipients"),
        "{reply}"
    );
    assert!(reply.contains("not delivered within 120 hours"), "{reply}");
    assert_eq!(env.job(&id).await.state, "failed");
    let jobs = env.store.jobs(&JobFilter::default(), 10, 0).await.unwrap();
    assert!(
        jobs.iter().any(|j| j.submitter == "hikyaku"),
        "a notice is queued"
    );
}

#[tokio::test]
async fn permanent_550_fails_with_the_reply_and_queues_a_failure_notice() {
    let env = Env::new(Flavor::Exchange).await;
    let id = env
        .enqueue(&["nobody@contoso.example"], &simple("bounce"))
        .await;
    env.cloud.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::EndOfData,
        code: 550,
        text: "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
            .into(),
    });
    let o = env.deliver_next().await;
    let Outcome::Failed { reply } = &o else {
        panic!("{o:?}")
    };
    assert_eq!(
        reply,
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
    );
    let job = env.job(&id).await;
    assert_eq!(job.state, "failed");
    assert_eq!(job.last_reply.as_deref(), Some(reply.as_str()));
    // The notice is queued for the envelope sender, through the same account.
    let jobs = env.store.jobs(&JobFilter::default(), 10, 0).await.unwrap();
    let notice = jobs
        .iter()
        .find(|j| j.submitter == "hikyaku")
        .expect("a failure notice job");
    assert_eq!(notice.mail_from, "");
    assert_eq!(notice.rcpt_to, vec![DEVICE.to_owned()]);
    assert_eq!(notice.account_id, Some(env.account));
    // It goes out, and a failure of the notice itself makes no new notice.
    env.cloud.set_smtp_fault(SmtpFault::None);
    assert!(matches!(env.deliver_next().await, Outcome::Sent { .. }));
    let m = &env.cloud.inbox()[0];
    assert_eq!(m.rcpt_to, vec![DEVICE.to_owned()]);
    let text = String::from_utf8_lossy(&m.data);
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; nobody@contoso.example"));
    assert!(text.contains("Status: 5.1.10"));
    assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.10"));
    assert!(!text.contains("Hello."), "the notice carries headers only");
}

#[tokio::test]
async fn failed_notice_makes_no_notice_and_none_disables_notices() {
    let env = Env::with(
        Flavor::Exchange,
        Options::default(),
        None,
        DeliveryConfig {
            failure_notice_to: "none".into(),
            ..config()
        },
    )
    .await;
    env.enqueue(&["x@contoso.example"], &simple("a")).await;
    env.cloud.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::EndOfData,
        code: 554,
        text: "5.6.0 Corrupt message content".into(),
    });
    assert!(matches!(env.deliver_next().await, Outcome::Failed { .. }));
    let jobs = env.store.jobs(&JobFilter::default(), 10, 0).await.unwrap();
    assert_eq!(jobs.len(), 1, "no notice with failure_notice_to = none");
}

#[tokio::test]
async fn hang_times_out_and_defers() {
    let env = Env::with(
        Flavor::Exchange,
        Options::default(),
        None,
        DeliveryConfig {
            connect_timeout_secs: 1,
            command_timeout_secs: 1,
            ..config()
        },
    )
    .await;
    env.enqueue(&["boss@contoso.example"], &simple("hang"))
        .await;
    env.cloud.set_smtp_fault(SmtpFault::Hang);
    let start = Instant::now();
    let o = env.deliver_next().await;
    // localhost is not the provider's host: a port that does not answer
    // reads like any other port without an SMTP server.
    assert!(
        deferred_reply(&o).contains("no SMTP server with TLS answered at localhost:"),
        "{o:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(6));
    // Hanging after the data (the at-least-once window) defers too.
    env.cloud
        .set_smtp_fault(SmtpFault::HangAt(SmtpStage::EndOfData));
    let o = env.deliver_next().await;
    let reply = deferred_reply(&o);
    assert!(reply.contains("(after the message was sent)"), "{reply}");
}

#[tokio::test]
async fn close_mid_data_and_down_defer() {
    let env = Env::new(Flavor::Exchange).await;
    let id = env.enqueue(&["boss@contoso.example"], &simple("cut")).await;
    env.cloud.set_smtp_fault(SmtpFault::CloseMidData);
    let o = env.deliver_next().await;
    deferred_reply(&o);
    env.cloud.set_smtp_fault(SmtpFault::Down);
    let o = env.deliver_next().await;
    assert!(deferred_reply(&o).contains("connect"), "{o:?}");
    let job = env.job(&id).await;
    assert_eq!((job.state.as_str(), job.attempts), ("deferred", 2));
    assert!(env.store.job_body(&id).await.is_ok(), "the message is kept");
}

#[tokio::test]
async fn expired_access_token_is_refreshed_once_and_sent() {
    let env = Env::new(Flavor::Exchange).await;
    env.enqueue(&["boss@contoso.example"], &simple("token"))
        .await;
    let refreshes = env.cloud.refresh_count();
    env.cloud.expire_access_tokens();
    let o = env.deliver_next().await;
    assert!(matches!(o, Outcome::Sent { .. }), "{o:?}");
    assert_eq!(env.cloud.refresh_count(), refreshes + 1);
}

#[tokio::test]
async fn revoked_grant_waits_without_counting_then_sends_after_reauthorization() {
    let env = Env::new(Flavor::Exchange).await;
    let id = env
        .enqueue(&["boss@contoso.example"], &simple("wait"))
        .await;
    env.cloud.revoke_grants(MAILBOX);
    let o = env.deliver_next().await;
    let Outcome::WaitingForAuthorization { reason } = &o else {
        panic!("{o:?}")
    };
    assert!(
        reason.starts_with("waiting for re-authorization of the Microsoft account"),
        "{reason}"
    );
    let job = env.job(&id).await;
    assert_eq!((job.state.as_str(), job.attempts), ("deferred", 0));
    assert!(job.next_attempt_at <= env.clock.unix() + 61);
    assert_eq!(
        env.store.account(env.account).await.unwrap().token_status,
        "error"
    );
    // While the status is Error the job keeps waiting, still uncounted.
    let o = env.deliver_next().await;
    assert!(
        matches!(o, Outcome::WaitingForAuthorization { .. }),
        "{o:?}"
    );
    assert_eq!(env.job(&id).await.attempts, 0);
    assert!(env.cloud.inbox().is_empty());
    env.authorize().await;
    let o = env.deliver_next().await;
    assert!(matches!(o, Outcome::Sent { .. }), "{o:?}");
    assert_eq!(env.job(&id).await.attempts, 1);
    assert_eq!(env.cloud.inbox().len(), 1);
}

#[tokio::test]
async fn smtp_auth_disabled_defers_with_advice() {
    let env = Env::new(Flavor::Exchange).await;
    let id = env
        .enqueue(&["boss@contoso.example"], &simple("5.7.139"))
        .await;
    env.cloud.disable_smtp_auth(MAILBOX);
    let o = env.deliver_next().await;
    let reply = deferred_reply(&o);
    assert!(reply.starts_with("535 5.7.139"), "{reply}");
    assert!(
        reply.contains("Manage email apps") && reply.contains("Authenticated SMTP"),
        "{reply}"
    );
    assert_eq!(env.job(&id).await.state, "deferred");
    env.cloud.enable_smtp_auth(MAILBOX);
    assert!(matches!(env.deliver_next().await, Outcome::Sent { .. }));
}

#[tokio::test]
async fn gmail_334_challenge_is_decoded_into_the_reply() {
    let env = Env::new(Flavor::Gmail).await;
    env.enqueue(&["boss@example.net"], &simple("gmail")).await;
    env.cloud.expire_access_tokens();
    env.cloud.set_token_endpoint_fault(HttpFault::Status(500));
    let o = env.deliver_next().await;
    let reply = deferred_reply(&o);
    assert!(
        reply.starts_with("535 5.7.8 Username and Password not accepted"),
        "{reply}"
    );
    assert!(
        reply.contains(r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#),
        "{reply}"
    );
    env.cloud.set_token_endpoint_fault(HttpFault::None);
    assert!(matches!(env.deliver_next().await, Outcome::Sent { .. }));
    let m = &env.cloud.inbox()[0];
    assert_eq!(m.mail_from, GMAIL);
}

#[tokio::test]
async fn gmail_implicit_tls() {
    let env = Env::new(Flavor::GmailImplicit).await;
    env.enqueue(&["boss@example.net"], &simple("465")).await;
    let o = env.deliver_next().await;
    assert!(matches!(o, Outcome::Sent { .. }), "{o:?}");
    assert_eq!(env.cloud.inbox()[0].auth_user, GMAIL);
}

#[tokio::test]
async fn cn_mismatch_defers_before_auth() {
    let env = Env::with(
        Flavor::Exchange,
        Options {
            cert: CertMode::CnMismatch,
            ..Options::default()
        },
        Some((true, true)),
        config(),
    )
    .await;
    env.enqueue(&["boss@contoso.example"], &simple("cn")).await;
    let o = env.deliver_next().await;
    let reply = deferred_reply(&o);
    // localhost is not the provider's SMTP host: the mismatch is named
    // without the certificate's CN (the provider's own hosts get the full
    // text: delivery::smtp's host tests).
    assert!(
        reply.contains("the certificate's subject CN does not match the host of localhost:"),
        "{reply}"
    );
    assert!(!reply.contains("other.example"), "{reply}");
    // The check is part of the handshake: no AUTH was sent.
    assert!(reply.contains("(during the TLS handshake)"), "{reply}");
    assert!(env.cloud.inbox().is_empty());
}

#[tokio::test]
async fn untrusted_certificate_defers_with_the_tls_reason() {
    let env = Env::with(
        Flavor::Exchange,
        Options {
            cert: CertMode::Untrusted,
            ..Options::default()
        },
        Some((true, false)),
        config(),
    )
    .await;
    env.enqueue(&["boss@contoso.example"], &simple("untrusted"))
        .await;
    let o = env.deliver_next().await;
    let reply = deferred_reply(&o);
    assert!(
        reply.starts_with("TLS: certificate is not trusted (unknown issuer)")
            && reply.contains("(during the TLS handshake)"),
        "{reply}"
    );
    assert!(env.cloud.inbox().is_empty());
}

#[tokio::test]
async fn refused_recipients_are_recorded_and_rate_limit_waits() {
    let env = Env::with(
        Flavor::Exchange,
        Options::default(),
        None,
        DeliveryConfig {
            rate_per_minute: 1,
            ..config()
        },
    )
    .await;
    let id = env
        .enqueue(
            &["boss@contoso.example", "not an address"],
            &simple("partial"),
        )
        .await;
    let o = env.deliver_next().await;
    let Outcome::Sent { reply } = &o else {
        panic!("{o:?}")
    };
    assert!(
        reply.contains("refused recipients: <not an address>"),
        "{reply}"
    );
    assert_eq!(
        env.cloud.inbox()[0].rcpt_to,
        vec!["boss@contoso.example".to_owned()]
    );
    assert_eq!(env.job(&id).await.state, "sent");
    // The notice about the refused recipient is over the rate limit: it waits, uncounted.
    let o = env.deliver_next().await;
    assert!(deferred_reply(&o).contains("rate limit"), "{o:?}");
    let notice = env
        .store
        .jobs(&JobFilter::default(), 10, 0)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.submitter == "hikyaku")
        .unwrap();
    assert_eq!((notice.state.as_str(), notice.attempts), ("deferred", 0));
    // It quotes the original header, though the sent job's body is gone.
    let text = String::from_utf8(env.store.job_body(&notice.id).await.unwrap()).unwrap();
    assert!(
        text.contains("Content-Type: text/rfc822-headers\r\n\r\n")
            && text.contains("Subject: partial"),
        "{text}"
    );
}

/// With PIPELINING offered, MAIL, RCPT and DATA go out in one write (RFC
/// 2920), and each reply of the group is still judged on its own; without
/// it, the same happens step by step. A refused recipient is recorded and
/// the others get the message; every recipient refused fails the job and
/// leaves the session in step for the next one; a temporary refusal of one
/// recipient abandons the transaction with nothing sent.
#[tokio::test]
async fn pipelined_and_stepwise_envelopes_judge_each_reply() {
    for pipelining in [true, false] {
        let env = Env::new(Flavor::Exchange).await;
        env.cloud.set_pipelining(pipelining);
        env.cloud.refuse_recipient("ghost@contoso.example", 550);

        let id = env
            .enqueue(
                &["boss@contoso.example", "ghost@contoso.example"],
                &simple("partial"),
            )
            .await;
        let o = env.deliver_job(&id).await;
        let Outcome::Sent { reply } = &o else {
            panic!("{o:?}")
        };
        assert!(
            reply.contains("<ghost@contoso.example>: 550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
            "{reply}"
        );
        let inbox = env.cloud.inbox();
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].rcpt_to, vec!["boss@contoso.example".to_owned()]);
        assert!(String::from_utf8_lossy(&inbox[0].data).contains("Subject: partial"));

        let id = env
            .enqueue(&["ghost@contoso.example"], &simple("nobody"))
            .await;
        let o = env.deliver_job(&id).await;
        let Outcome::Failed { reply } = &o else {
            panic!("{o:?}")
        };
        assert!(reply.contains("all recipients refused"), "{reply}");
        assert!(reply.contains("5.1.10"), "{reply}");

        // The session is still usable: the next job goes over it.
        let id = env
            .enqueue(&["boss@contoso.example"], &simple("after"))
            .await;
        assert!(matches!(env.deliver_job(&id).await, Outcome::Sent { .. }));
        let connections = env.cloud.smtp_connections();
        assert_eq!(connections.opened, 1, "pipelining {pipelining}");
        assert_eq!(
            connections.pipelined_envelopes > 0,
            pipelining,
            "{connections:?}"
        );

        // One recipient busy (4xx) while the other is accepted: nothing is
        // sent to anyone now, the whole job is tried again later.
        env.cloud.refuse_recipient("busy@contoso.example", 451);
        let before = env.cloud.inbox().len();
        let id = env
            .enqueue(
                &["boss@contoso.example", "busy@contoso.example"],
                &simple("later"),
            )
            .await;
        let o = env.deliver_job(&id).await;
        assert!(deferred_reply(&o).contains("451 4.2.1"), "{o:?}");
        // Nor later: nothing shows a delivery that is not coming, so it
        // gets time to show up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(env.cloud.inbox().len(), before, "nothing was delivered");
        env.cloud.refuse_recipient("busy@contoso.example", 0);
        assert!(matches!(env.deliver_job(&id).await, Outcome::Sent { .. }));
        let last = env.cloud.inbox().pop().unwrap();
        assert_eq!(
            last.rcpt_to,
            vec![
                "boss@contoso.example".to_owned(),
                "busy@contoso.example".to_owned()
            ]
        );
    }
}

#[tokio::test]
async fn worker_pool_delivers_queued_jobs_on_wake() {
    let env = Env::new(Flavor::Exchange).await;
    let shutdown = CancellationToken::new();
    let handle = env.delivery.spawn(shutdown.clone());
    // Time for the workers to find the queue empty and wait, so that the
    // wake below is what delivers; nothing outside shows them waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = env.enqueue(&["a@contoso.example"], &simple("one")).await;
    let b = env.enqueue(&["b@contoso.example"], &simple("two")).await;
    env.delivery.wake();
    let inbox = env.cloud.wait_for_inbox(2, Duration::from_secs(10)).await;
    assert_eq!(inbox.len(), 2);
    eventually(Duration::from_secs(5), "both jobs sent", async || {
        let (ja, jb) = (env.job(&a).await, env.job(&b).await);
        if ja.state == "sent" && jb.state == "sent" {
            Ok(())
        } else {
            Err(format!("{ja:?} {jb:?}"))
        }
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn sessions_are_reused_and_replaced_when_the_server_closed_them() {
    let env = Env::new(Flavor::Exchange).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            env.enqueue(&["boss@contoso.example"], &simple(&format!("reuse {i}")))
                .await,
        );
        let o = env.deliver_next().await;
        assert!(matches!(o, Outcome::Sent { .. }), "{o:?}");
    }
    let inbox = env.cloud.inbox();
    assert_eq!(inbox.len(), 3);
    assert!(
        inbox.iter().all(|m| m.connection == inbox[0].connection),
        "one connection carries all three: {:?}",
        inbox.iter().map(|m| m.connection).collect::<Vec<_>>()
    );
    let c = env.cloud.smtp_connections();
    assert_eq!((c.opened, c.authentications), (1, 1), "{c:?}");

    // The server hangs up the idle session; the next job notices at MAIL,
    // before anything was sent, and goes out over a new session in the
    // same attempt.
    env.cloud.close_idle_smtp_connections();
    eventually(
        Duration::from_secs(5),
        "the idle session closed",
        async || env.cloud.smtp_connections().open == 0,
    )
    .await;
    let id = env
        .enqueue(&["boss@contoso.example"], &simple("after idle close"))
        .await;
    let o = env.deliver_next().await;
    assert!(matches!(o, Outcome::Sent { .. }), "{o:?}");
    let job = env.job(&id).await;
    assert_eq!((job.state.as_str(), job.attempts), ("sent", 1), "{job:?}");
    let inbox = env.cloud.inbox();
    assert_eq!(inbox.len(), 4);
    assert_ne!(inbox[3].connection, inbox[0].connection);
    assert_eq!(env.cloud.smtp_connections().authentications, 2);
    for id in ids {
        assert_eq!(env.job(&id).await.state, "sent");
    }
}

#[tokio::test]
async fn a_refreshed_token_opens_a_new_session() {
    let env = Env::new(Flavor::Exchange).await;
    env.enqueue(&["boss@contoso.example"], &simple("old token"))
        .await;
    assert!(matches!(env.deliver_next().await, Outcome::Sent { .. }));
    env.svc.force_refresh(env.account).await.unwrap();
    env.enqueue(&["boss@contoso.example"], &simple("new token"))
        .await;
    assert!(matches!(env.deliver_next().await, Outcome::Sent { .. }));
    let inbox = env.cloud.inbox();
    assert_ne!(inbox[0].connection, inbox[1].connection);
    assert_eq!(env.cloud.smtp_connections().authentications, 2);
}

#[tokio::test]
async fn idle_zero_closes_each_session_and_the_account_limit_holds() {
    let env = Env::with(
        Flavor::Exchange,
        Options::default(),
        None,
        DeliveryConfig {
            workers: 8,
            connections_per_account: 2,
            connection_idle_secs: 0,
            rate_per_minute: 100_000,
            ..config()
        },
    )
    .await;
    let n = 24;
    for i in 0..n {
        env.enqueue(&["boss@contoso.example"], &simple(&format!("limit {i}")))
            .await;
    }
    let shutdown = CancellationToken::new();
    let handle = env.delivery.spawn(shutdown.clone());
    let inbox = env.cloud.wait_for_inbox(n, Duration::from_secs(30)).await;
    assert_eq!(inbox.len(), n);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .unwrap()
        .unwrap();
    let c = env.cloud.smtp_connections();
    // 8 workers, but never more than 2 connections of the account at once;
    // with reuse off, one connection per message.
    assert!(c.max_open <= 2, "{c:?}");
    assert_eq!(c.opened, n as u64, "{c:?}");
}

#[tokio::test]
async fn an_injected_reply_after_starttls_is_refused() {
    let env = Env::new(Flavor::Exchange).await;
    env.cloud.set_smtp_fault(SmtpFault::InjectAfterStartTls);
    env.enqueue(&["boss@contoso.example"], &simple("injection"))
        .await;
    let o = env.deliver_next().await;
    let reply = deferred_reply(&o);
    // localhost is not the provider's host: the refusal reads like any
    // other port that gave no usable SMTP server.
    assert!(
        reply.contains("no SMTP server with TLS answered at localhost:"),
        "{reply}"
    );
    assert!(env.cloud.inbox().is_empty());
    assert_eq!(env.cloud.smtp_connections().authentications, 0);
}

/// Every fault of the upstream and the token endpoint, one after another
/// while a queue drains through several workers and reused sessions:
/// 421/451 refusals, a hang at the end of DATA (timeouts fire), a close
/// mid-DATA, the token endpoint answering 500, slow or down while tokens
/// expire, and the grant revoked mid-load (jobs wait; re-authorization lets
/// them go). Afterwards the accounting adds up: every job is sent, and the
/// inbox holds each message exactly once (none of these faults lets the
/// upstream keep a message it did not acknowledge).
#[tokio::test]
async fn faults_under_load_lose_nothing_and_duplicate_nothing() {
    let env = Env::with(
        Flavor::Exchange,
        Options {
            access_token_lifetime_secs: 3600,
            ..Options::default()
        },
        None,
        DeliveryConfig {
            workers: 4,
            connections_per_account: 3,
            rate_per_minute: 100_000,
            connect_timeout_secs: 1,
            command_timeout_secs: 1,
            ..config()
        },
    )
    .await;
    let n = 80;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            env.enqueue(&["boss@contoso.example"], &simple(&format!("load-{i:03}")))
                .await,
        );
    }
    let shutdown = CancellationToken::new();
    let handle = env.delivery.spawn(shutdown.clone());
    let faults = [
        SmtpFault::ReplyAt {
            stage: SmtpStage::Mail,
            code: 421,
            text: "4.3.2 Service not available, closing transmission channel".into(),
        },
        SmtpFault::ReplyAt {
            stage: SmtpStage::EndOfData,
            code: 451,
            text: "4.7.500 Server busy. Please try again later.".into(),
        },
        SmtpFault::HangAt(SmtpStage::EndOfData),
        SmtpFault::CloseMidData,
        SmtpFault::Down,
    ];
    // Each fault lasts a while under load, then the upstream is healthy a
    // while: these windows are time by design, not waits for a state.
    for fault in faults {
        env.cloud.set_smtp_fault(fault);
        tokio::time::sleep(Duration::from_millis(700)).await;
        env.cloud.set_smtp_fault(SmtpFault::None);
        env.delivery.wake();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The token endpoint fails while the access tokens expire (windows of
    // time, as above).
    for fault in [
        HttpFault::Status(500),
        HttpFault::Down,
        HttpFault::Delay(Duration::from_secs(3)),
    ] {
        env.cloud.set_token_endpoint_fault(fault);
        env.cloud.expire_access_tokens();
        env.cloud.close_idle_smtp_connections();
        tokio::time::sleep(Duration::from_millis(700)).await;
        env.cloud.set_token_endpoint_fault(HttpFault::None);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The grant is revoked mid-load: jobs wait a while (a window of time,
    // as above), then re-authorization.
    env.cloud.revoke_grants(env.mailbox);
    env.cloud.expire_access_tokens();
    env.cloud.close_idle_smtp_connections();
    tokio::time::sleep(Duration::from_millis(700)).await;
    env.authorize().await;

    // Drain: make deferred and waiting jobs due (the clock moves on an hour
    // at a time; the maximum age is days) until every job is sent.
    let start = Instant::now();
    loop {
        let mut states = std::collections::BTreeMap::<String, usize>::new();
        for id in &ids {
            *states
                .entry(env.job(id).await.state.to_string())
                .or_default() += 1;
        }
        if states.get("sent") == Some(&n) {
            break;
        }
        assert!(
            !states.contains_key("failed"),
            "a temporary fault failed a job: {states:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "{states:?}");
        env.clock.jump(time::Duration::hours(1));
        env.delivery.wake();
        // One hour per round at this pace: the workers deliver what came
        // due before the clock moves on (a faster pace would age jobs out).
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .unwrap()
        .unwrap();

    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for m in env.cloud.inbox() {
        let data = String::from_utf8_lossy(&m.data).into_owned();
        let subject = data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_string();
        *seen.entry(subject).or_default() += 1;
    }
    assert_eq!(seen.len(), n, "every message arrived");
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    let retried = {
        let mut r = 0;
        for id in &ids {
            if env.job(id).await.attempts > 1 {
                r += 1;
            }
        }
        r
    };
    println!("faults under load: {n} messages, {retried} retried, 0 lost, 0 duplicates");
}

/// With a Sender address set (an alias the mailbox may send as), the
/// envelope and the rewritten From both use it; the device's own address
/// goes to Reply-To.
#[tokio::test]
async fn from_is_rewritten_to_the_configured_sender() {
    let env = Env::new(Flavor::Gmail).await;
    env.cloud.allow_send_as(GMAIL, "scans@example.com");
    let a = env.store.account(env.account).await.unwrap();
    env.store
        .save_email_settings(
            env.account,
            &EmailSettings {
                smtp_host: a.smtp_host.clone(),
                smtp_port: a.smtp_port,
                smtp_security: a.smtp_security.to_string(),
                sender: Some("scans@example.com".into()),
                is_default: true,
            },
            0,
        )
        .await
        .unwrap();
    let body = format!(
        "From: \"Scanner 3F\" <{DEVICE}>\r\nTo: boss@example.net\r\nSubject: alias\r\n\r\nhi\r\n"
    );
    env.enqueue(&["boss@example.net"], body.as_bytes()).await;
    let o = env.deliver_next().await;
    assert!(matches!(o, Outcome::Sent { .. }), "{o:?}");
    let m = &env.cloud.inbox()[0];
    assert_eq!(m.mail_from, "scans@example.com");
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap();
    let from = parsed.from().and_then(|f| f.first()).unwrap();
    assert_eq!(from.address(), Some("scans@example.com"));
    assert_eq!(from.name(), Some("Scanner 3F"));
    let reply_to = parsed.reply_to().and_then(|f| f.first()).unwrap();
    assert_eq!(reply_to.address(), Some(DEVICE));
}
