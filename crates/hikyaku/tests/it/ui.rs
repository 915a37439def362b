//! The first-time administrator: every page reachable from the Portal fits
//! at 1280 and 768 px in Japanese and English, speaks the page's language,
//! and passes axe-core; the set-up checklist, Connect your devices, Test
//! connection, confirmations, the 403 page and the CA file upload.

use std::time::Duration;

use fakecloud::{CertMode, SmtpFault, SmtpStage};
use fantoccini::Locator;

use crate::browser::{Chrome, sign_in};
use crate::oauth_flow::{by_id, edit_google, edit_microsoft, fakecloud, server_for, trust};
use crate::sending::{job_state, microsoft_ready, point_smtp, submit};
use testkit::{ADMIN_PASSWORD, Browser, TestServer, add_user, eventually};

/// Every page a signed-in Administrator reaches from the Portal.
const PAGES: &[&str] = &[
    "/",
    "/devices",
    "/settings",
    "/settings/send/email",
    "/settings/send/oauth/microsoft",
    "/settings/send/oauth/microsoft/edit",
    "/settings/send/oauth/google",
    "/settings/send/oauth/google/edit",
    "/settings/send/oauth/google/register",
    "/jobs",
    "/settings/management/datetime",
    "/settings/management/ca-certificates",
    "/settings/management/network",
    "/settings/management/users",
    "/settings/management/audit-log",
    "/help/microsoft-entra",
    "/help/google-cloud",
];

/// axe-core's script, installed by scripts/test (npm) into a cache directory.
fn axe_source() -> String {
    let dir = std::env::var("AXE_CORE_DIR")
        .unwrap_or_else(|_| format!("{}/../../target/axe", env!("CARGO_MANIFEST_DIR")));
    let path = format!("{dir}/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("axe-core missing at {path} ({e}): run scripts/test, which installs it")
    })
}

/// How far the page scrolls sideways, in CSS pixels.
const OVERFLOW: &str =
    "return document.documentElement.scrollWidth - document.documentElement.clientWidth;";

/// Text of the page in English words, outside quoted text (`lang="en"`),
/// code and examples: on a Japanese page there must be none.
const ENGLISH: &str = r#"
const words = /\b(the|and|of|to|is|are|for|with|not|from|this|that|has|have|was|been|will|cannot|please|your|you|could|would|should|must)\b/i;
const found = [];
const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
let n;
while ((n = walk.nextNode())) {
  const el = n.parentElement;
  if (!el || el.closest('[lang="en"], code, pre, script, style, [hidden]')) continue;
  const text = n.textContent.trim();
  if (text && words.test(text)) found.push(text);
}
return found;
"#;

/// axe-core's serious and critical violations, as "rule: target" lines.
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] }).then(r => {
  done(r.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')));
}).catch(e => done(['axe failed: ' + e]));
"#;

async fn crawl(c: &Chrome, base: &str, lang: &str, axe: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for width in [1280u32, 768] {
        c.client
            .set_window_size(width, 900)
            .await
            .expect("window size");
        for path in PAGES {
            c.client.goto(&format!("{base}{path}")).await.expect("page");
            c.client
                .wait()
                .for_element(Locator::Css("h1"))
                .await
                .unwrap_or_else(|e| panic!("{path}: no heading ({e})"));
            let page_name = match path.trim_matches('/') {
                "" => "portal".to_string(),
                p => p.replace('/', "-"),
            };
            c.shot(&format!("ui-{lang}-{width}-{page_name}")).await;
            let over = c
                .client
                .execute(OVERFLOW, vec![])
                .await
                .expect("overflow")
                .as_i64()
                .unwrap_or(0);
            if over > 0 {
                problems.push(format!(
                    "{lang} {width}px {path}: scrolls sideways by {over} px"
                ));
            }
            if lang == "ja" {
                let english = c.client.execute(ENGLISH, vec![]).await.expect("text");
                for t in english.as_array().into_iter().flatten() {
                    problems.push(format!("ja {width}px {path}: English text {t}"));
                }
            }
            if width == 1280 {
                c.client.execute(axe, vec![]).await.expect("axe-core loads");
                let v = c
                    .client
                    .execute_async(AXE_RUN, vec![])
                    .await
                    .expect("axe-core runs");
                for line in v.as_array().into_iter().flatten() {
                    problems.push(format!("{lang} {path}: axe {line}"));
                }
            }
        }
    }
    problems
}

/// Accounts in several states (Microsoft Active, Google configured but not
/// authorized) and jobs sent, deferred and failed, then every page in both
/// languages at both widths.
#[tokio::test]
async fn every_page_fits_speaks_the_language_and_passes_axe() {
    let axe = axe_source();
    let (fc, server, admin) = microsoft_ready().await;
    assert_eq!(
        edit_google(&admin, "google-client-secret").await.status,
        303
    );
    assert!(submit(&server, "Delivered", "x").await.starts_with("250"));
    eventually(Duration::from_secs(15), "job sent", || async {
        job_state(&admin, "Delivered")
            .await
            .filter(|(s, _)| s == "sent")
    })
    .await;
    fc.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::Rcpt,
        code: 550,
        text: "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found".into(),
    });
    assert!(submit(&server, "Refused", "x").await.starts_with("250"));
    eventually(Duration::from_secs(15), "job failed", || async {
        job_state(&admin, "Refused")
            .await
            .filter(|(s, _)| s == "failed")
    })
    .await;
    fc.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::Rcpt,
        code: 451,
        text: "4.3.2 Service busy; try again later".into(),
    });
    assert!(submit(&server, "Waiting", "x").await.starts_with("250"));
    eventually(Duration::from_secs(15), "job deferred", || async {
        job_state(&admin, "Waiting")
            .await
            .filter(|(s, _)| s == "deferred")
    })
    .await;
    let mut problems = Vec::new();
    for lang in ["ja", "en"] {
        let Some(c) = Chrome::start(lang).await else {
            return;
        };
        sign_in(&c, &server.base, "admin").await;
        problems.extend(crawl(&c, &server.base, lang, &axe).await);
        c.close().await;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn done(page: &str, id: &str) -> Option<bool> {
    let marker = format!("id=\"{id}\" class=\"");
    let at = page.find(&marker)? + marker.len();
    Some(page[at..].starts_with("done"))
}

#[tokio::test]
async fn the_checklist_ticks_from_real_state_and_goes_away_when_done() {
    let fresh = TestServer::start().await;
    let portal = fresh.setup_admin().await.get("/").await.body;
    for id in [
        "check-oauth",
        "check-email",
        "check-submitter",
        "check-delivered",
    ] {
        assert_eq!(done(&portal, id), Some(false), "{id}: {portal}");
    }
    // No certificate was refused and none was added: the CA step is not needed.
    assert_eq!(done(&portal, "check-ca"), None);
    // Connected to Microsoft (its CA added); E-mail Settings saved with the
    // token Active are tested at once; a submitter.
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = crate::oauth_flow::authorize_microsoft(&server, &fc).await;
    point_smtp(&admin, "microsoft", fc.exchange_smtp_addr(), "starttls").await;
    crate::sending::add_submitter(&admin, "microsoft").await;
    let portal = admin.get("/").await.body;
    assert_eq!(done(&portal, "check-ca"), Some(true), "{portal}");
    assert_eq!(done(&portal, "check-oauth"), Some(true), "{portal}");
    assert_eq!(done(&portal, "check-email"), Some(true), "{portal}");
    assert_eq!(done(&portal, "check-submitter"), Some(true), "{portal}");
    assert_eq!(done(&portal, "check-delivered"), Some(false), "{portal}");
    assert!(submit(&server, "First", "x").await.starts_with("250"));
    eventually(Duration::from_secs(15), "checklist done", || async {
        let p = admin.get("/").await.body;
        (!p.contains("portal-checklist")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn test_connection_succeeds_and_names_cn_and_ca_problems() {
    // Success, with AUTH XOAUTH2 as the authorized mailbox.
    let (_fc, _server, admin) = microsoft_ready().await;
    let page = admin
        .submit_done(
            "/settings/send/email",
            "/settings/send/email/test",
            &[("provider", "microsoft")],
        )
        .await;
    assert!(
        page.body.contains("Test connection succeeded."),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("id=\"email-test-result-microsoft\" data-ok=\"true\"")
            && page.body.contains("authenticated as"),
        "{}",
        page.body
    );

    // The account's Add CN rule refuses the server: said before any AUTH.
    let fc = fakecloud(CertMode::CnMismatch).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    trust(&admin, &fc).await;
    let r = edit_microsoft(
        &admin,
        &fc.entra_endpoint("organizations"),
        &[("verify_cn", "on")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    point_smtp(&admin, "microsoft", fc.exchange_smtp_addr(), "starttls").await;
    admin.get("/lang/ja?next=/").await;
    let page = admin
        .submit_done(
            "/settings/send/email",
            "/settings/send/email/test",
            &[("provider", "microsoft")],
        )
        .await;
    assert!(
        page.body.contains("data-ok=\"false\"")
            && page
                .body
                .contains("証明書のCommon Nameがホスト名と一致しません"),
        "{}",
        page.body
    );
    assert!(fc.inbox().is_empty());

    // No CA added: unknown issuer, with the advice to add it, and the
    // checklist asks for CA certificates.
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    point_smtp(&admin, "microsoft", fc.exchange_smtp_addr(), "starttls").await;
    let page = admin
        .submit_done(
            "/settings/send/email",
            "/settings/send/email/test",
            &[("provider", "microsoft")],
        )
        .await;
    assert!(
        page.body
            .contains("is not trusted (unknown issuer) — add the issuing CA under CA Certificates"),
        "{}",
        page.body
    );
    let portal = admin.get("/").await.body;
    assert_eq!(done(&portal, "check-ca"), Some(false), "{portal}");
    // Settings changed since the test: the result says it is stale.
    point_smtp(&admin, "microsoft", fc.gmail_smtp_addr(), "starttls").await;
    let page = admin.get("/settings/send/email").await;
    assert!(
        page.body.contains("email-test-stale-microsoft"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_setting_that_fails_the_test_is_saved_with_a_warning() {
    let (_fc, _server, admin) = microsoft_ready().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let page = admin
        .submit_done(
            "/settings/send/email",
            "/settings/send/email",
            &[
                ("provider", "microsoft"),
                ("smtp_host", "localhost"),
                ("smtp_port", &port),
                ("smtp_security", "starttls"),
                ("sender", ""),
                ("is_default", "on"),
            ],
        )
        .await;
    assert!(
        page.body
            .contains("Saved. But the test connection with these settings failed"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!("value=\"{port}\"")),
        "saved: {}",
        page.body
    );
    assert!(
        page.body.contains("cannot connect to localhost"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn devices_page_shows_the_listener_and_the_loopback_warning() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let port = server.smtp_addrs()[0].port();
    for path in ["/", "/devices"] {
        let page = admin.get(path).await;
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains(&format!("127.0.0.1:{port}"))
                || page.body.contains(&format!("<code>{port}</code>")),
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains("id=\"devices-loopback\""), "{path}");
        assert!(page.body.contains("intake.starttls_listen"), "{path}");
    }
    let page = admin.get("/devices").await.body;
    assert!(page.contains("id=\"devices-nobody\""), "{page}");
    assert!(page.contains("hikyaku sendmail -t"), "{page}");
}

#[tokio::test]
async fn forbidden_page_names_the_role_and_keeps_the_navigation() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    add_user(&admin, "viewer", "general_user").await;
    let user = Browser::with_lang(&server, "ja");
    user.login("viewer", ADMIN_PASSWORD).await;
    user.get("/lang/ja?next=/").await;
    let page = user.get("/settings/management/users").await;
    assert_eq!(page.status, 403);
    assert!(
        page.body.contains("Administratorの権限が必要です"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"nav-portal\""), "{}", page.body);
    let api = user.get("/api/v1/users").await;
    assert_eq!(api.status, 403);
    assert_eq!(api.json()["error"], "forbidden");
}

#[tokio::test]
async fn time_zones_and_help_pages_are_in_the_pages_language() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    admin.get("/lang/ja?next=/").await;
    let page = admin.get("/settings/management/datetime").await.body;
    assert!(page.contains("UTC+09:00 東京、ソウル"), "{page}");
    assert!(!page.contains("(Tokyo"), "{page}");
    let edit = admin.get("/settings/send/oauth/microsoft/edit").await.body;
    assert!(
        edit.contains("READMEを参照してください。"),
        "the manual's hint stays"
    );
    assert!(edit.contains("href=\"/help/microsoft-entra\""), "{edit}");
    let help = admin.get("/help/microsoft-entra").await.body;
    assert!(
        help.contains("パブリック クライアント フローを許可する"),
        "{help}"
    );
    let help = admin.get("/help/google-cloud").await.body;
    assert!(help.contains("デスクトップアプリ"), "{help}");
}

/// Deletes ask first (in place, without script), and a CA certificate can
/// be chosen as a file and is uploaded with the form.
#[tokio::test]
async fn deletes_ask_first_and_a_ca_file_can_be_chosen() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    drop(server.setup_admin().await);
    let pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pem.path(), fc.ca_pem()).unwrap();
    let Some(c) = Chrome::start("en").await else {
        return;
    };
    sign_in(&c, &server.base, "admin").await;
    // The Portal of a new installation: the set-up checklist, for the README.
    assert!(c.source().await.contains("portal-checklist"));
    c.shot("ui-en-1280-portal-checklist").await;
    c.client
        .goto(&format!(
            "{}/settings/management/ca-certificates",
            server.base
        ))
        .await
        .unwrap();
    let input = c.client.find(Locator::Css("#ca-file")).await.unwrap();
    input
        .send_keys(&pem.path().display().to_string())
        .await
        .unwrap();
    // The file itself is uploaded with the form (no script reads it).
    c.click("#ca-add").await;
    let list = c.text("#ca-list").await;
    assert!(list.contains("fakecloud"), "{list}");
    assert!(c.source().await.contains("Saved."));
    // The delete button only opens the confirmation that says what is lost.
    let confirm = c
        .client
        .find(Locator::Css("details.confirm"))
        .await
        .unwrap();
    assert!(confirm.attr("open").await.unwrap().is_none());
    c.click("details.confirm > summary").await;
    let text = c.text("details.confirm p").await;
    assert!(text.contains("no longer trusted"), "{text}");
    c.click("details.confirm button[type=submit]").await;
    c.client
        .wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    assert!(
        c.client
            .find(Locator::Css("details.confirm"))
            .await
            .is_err()
    );
    c.close().await;
}

/// A NetworkAdmin sees the Google page refused with the role it needs.
#[tokio::test]
async fn a_network_admin_is_told_google_needs_an_administrator() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    add_user(&admin, "net", "network_admin").await;
    let user = Browser::new(&server);
    user.login("net", ADMIN_PASSWORD).await;
    let page = user.get("/settings/send/oauth/google").await;
    assert_eq!(page.status, 403);
    assert!(
        page.body.contains("needs the Administrator role"),
        "{}",
        page.body
    );
    assert_eq!(
        by_id(&page, "nav-jobs").as_deref(),
        Some("Send Job History")
    );
}

/// After OK on Edit Basic Settings: a notice, and the connection status of
/// the previous settings says that it is stale until Refresh.
#[tokio::test]
async fn saved_settings_give_a_notice_and_mark_the_old_status_stale() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = crate::oauth_flow::authorize_microsoft(&server, &fc).await;
    // Checks and saves are timed in seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let page = admin
        .submit_done(
            "/settings/send/oauth/microsoft/edit",
            "/settings/send/oauth/microsoft/edit",
            &[
                ("enabled", "on"),
                ("verify_cert", "on"),
                ("endpoint", &fc.entra_endpoint("organizations")),
                ("client_id", "ms-client-id"),
            ],
        )
        .await;
    assert!(page.body.contains("Saved."), "{}", page.body);
    assert!(
        page.body.contains("The settings changed after this check"),
        "{}",
        page.body
    );
    let page = crate::oauth_flow::refresh(&admin, "microsoft").await;
    assert!(
        !page.body.contains("The settings changed after this check"),
        "{}",
        page.body
    );
}
