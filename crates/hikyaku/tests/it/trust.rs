//! Date/Time and certificate trust, end to end: clock jumps (forward and
//! backward, with the token endpoint up and down), the clock skew measured from
//! a shifted `Date` header, the CA Certificates page, Add CN, the Date/Time
//! page and its roles.

use std::time::Duration;

use fakecloud::{CertMode, FakeCloud, HttpFault, Options};

use crate::oauth_flow::{
    authorize_microsoft, by_id, edit_microsoft, fakecloud, refresh, server_for, trust,
};
use testkit::{ADMIN_PASSWORD, Browser, Page, TestServer, add_user, eventually};

async fn fakecloud_with(opts: Options) -> FakeCloud {
    FakeCloud::start(Options {
        device_poll_interval_secs: 1,
        ..opts
    })
    .await
    .expect("fakecloud starts")
}

async fn microsoft_api(admin: &Browser) -> serde_json::Value {
    admin.get("/api/v1/oauth/microsoft").await.json()
}

async fn audit_log(admin: &Browser) -> String {
    admin.get("/settings/management/audit-log").await.body
}

/// Waits until the refresh counter passes `above`.
async fn refreshed_beyond(fc: &FakeCloud, above: u64, what: &str) -> u64 {
    eventually(Duration::from_secs(20), what, || async {
        let n = fc.refresh_count();
        (n > above).then_some(n)
    })
    .await
}

#[tokio::test]
async fn clock_jumps_refresh_every_token_and_keep_it_active() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = authorize_microsoft(&server, &fc).await;
    let before = fc.refresh_count();

    server.clock.jump(time::Duration::hours(2));
    // Sessions time out on the wall clock: sign in again after each jump.
    admin.login("admin", ADMIN_PASSWORD).await;
    let after_forward = refreshed_beyond(&fc, before, "a refresh after +2 h").await;
    let log = eventually(Duration::from_secs(10), "the jump audited", || async {
        let log = audit_log(&admin).await;
        log.contains("+7200 s").then_some(log)
    })
    .await;
    assert!(
        log.contains("clock_jump") && log.contains("system"),
        "{log}"
    );
    let api = microsoft_api(&admin).await;
    assert_eq!(api["token_status"], "active", "{api}");

    server.clock.jump(-time::Duration::hours(2));
    admin.login("admin", ADMIN_PASSWORD).await;
    refreshed_beyond(&fc, after_forward, "a refresh after -2 h").await;
    eventually(
        Duration::from_secs(10),
        "the backward jump audited",
        || async { audit_log(&admin).await.contains("-7200 s").then_some(()) },
    )
    .await;
    let page = admin.get("/settings/send/oauth/microsoft").await;
    assert_eq!(by_id(&page, "token-status").as_deref(), Some("Active"));
    // The connections were checked again too.
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful")
    );
}

#[tokio::test]
async fn jump_with_the_token_endpoint_down_keeps_a_valid_token_and_heals() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = authorize_microsoft(&server, &fc).await;
    let before = fc.refresh_count();
    fc.set_token_endpoint_fault(HttpFault::Down);
    server.clock.jump(time::Duration::hours(2));
    admin.login("admin", ADMIN_PASSWORD).await;
    // The access token is still valid (its deadline is monotonic): Active,
    // with the warning that the endpoint cannot be reached.
    let api = eventually(Duration::from_secs(20), "the warning", || async {
        let api = microsoft_api(&admin).await;
        api.to_string().contains("unreachable").then_some(api)
    })
    .await;
    assert_eq!(api["token_status"], "active", "{api}");
    fc.set_token_endpoint_fault(HttpFault::None);
    refreshed_beyond(&fc, before, "the healing refresh").await;
    eventually(Duration::from_secs(10), "the warning gone", || async {
        let api = microsoft_api(&admin).await;
        (api["token_status"] == "active" && !api.to_string().contains("unreachable")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn jump_with_the_token_endpoint_down_and_no_valid_token_is_an_error_until_it_is_back() {
    // 62 s tokens stop being handed out 2 s after issue (a minute must remain).
    let fc = fakecloud_with(Options {
        access_token_lifetime_secs: 62,
        ..Options::default()
    })
    .await;
    let server = server_for(&fc).await;
    let admin = authorize_microsoft(&server, &fc).await;
    // About time: the token ages past the minute that must remain (on the
    // monotonic clock, which the jump below does not move).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = fc.refresh_count();
    fc.set_token_endpoint_fault(HttpFault::Down);
    server.clock.jump(time::Duration::hours(2));
    admin.login("admin", ADMIN_PASSWORD).await;
    let page = eventually(Duration::from_secs(20), "Token Status Error", || async {
        let p = admin.get("/settings/send/oauth/microsoft").await;
        by_id(&p, "token-status")
            .is_some_and(|s| s.starts_with("Error"))
            .then_some(p)
    })
    .await;
    let status = by_id(&page, "token-status").unwrap_or_default();
    assert!(
        status.contains("retries") && status.contains("system clock changed"),
        "{status}"
    );
    // The endpoint is back: Active again without anyone doing anything.
    fc.set_token_endpoint_fault(HttpFault::None);
    refreshed_beyond(&fc, before, "the healing refresh").await;
    eventually(Duration::from_secs(10), "Active again", || async {
        let p = admin.get("/settings/send/oauth/microsoft").await;
        (by_id(&p, "token-status").as_deref() == Some("Active")).then_some(())
    })
    .await;
}

const SKEW_TEXT: &str = "The clock differs from";

#[tokio::test]
async fn skew_from_a_shifted_date_header_is_warned_everywhere() {
    for (offset, warned) in [(600, true), (0, false)] {
        let fc = fakecloud_with(Options {
            date_offset_secs: offset,
            ..Options::default()
        })
        .await;
        let server = server_for(&fc).await;
        let admin = server.setup_admin().await;
        trust(&admin, &fc).await;
        edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
        let ms = refresh(&admin, "microsoft").await;
        assert_eq!(
            by_id(&ms, "connection-status").as_deref(),
            Some("Successful"),
            "{}",
            ms.body
        );
        let portal = admin.get("/").await;
        let datetime = admin.get("/settings/management/datetime").await;
        for (name, page) in [
            ("microsoft", &ms),
            ("portal", &portal),
            ("datetime", &datetime),
        ] {
            assert_eq!(
                page.body.contains(SKEW_TEXT),
                warned,
                "offset {offset}, {name}: {}",
                page.body
            );
        }
        if warned {
            assert!(
                datetime.body.contains("+600 s")
                    || datetime.body.contains("+599 s")
                    || datetime.body.contains("+601 s"),
                "{}",
                datetime.body
            );
        }
    }
}

fn ca_ids(page: &Page) -> Vec<String> {
    let marker = "name=\"id\" value=\"";
    page.body
        .match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = &page.body[i + marker.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_ca_upload_trusts_fakecloud_and_deleting_it_distrusts_it_again() {
    let fc = fakecloud(CertMode::Trusted).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    edit_microsoft(&admin, &fc.entra_endpoint("organizations"), &[]).await;
    let page = refresh(&admin, "microsoft").await;
    let status = by_id(&page, "connection-status").unwrap_or_default();
    assert!(
        status.starts_with("Failed") && status.contains("unknown issuer"),
        "{status}"
    );

    trust(&admin, &fc).await;
    let list = admin.get("/settings/management/ca-certificates").await;
    assert!(list.body.contains("fakecloud"), "{}", list.body);
    // Subject and issuer of a root are the same name; validity; fingerprint.
    assert!(list.body.matches("fakecloud").count() >= 2, "{}", list.body);
    assert!(list.body.contains(" — "), "validity range: {}", list.body);
    let fingerprint_like = list.body.split("<code>").skip(1).any(|s| {
        let fp: String = s.chars().take_while(|c| *c != '<').collect();
        fp.len() >= 64 && fp.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
    });
    assert!(fingerprint_like, "{}", list.body);
    let page = refresh(&admin, "microsoft").await;
    assert_eq!(
        by_id(&page, "connection-status").as_deref(),
        Some("Successful"),
        "{}",
        page.body
    );

    let ids = ca_ids(&list);
    assert_eq!(ids.len(), 1, "{}", list.body);
    let r = admin
        .submit_done(
            "/settings/management/ca-certificates",
            "/settings/management/ca-certificates/delete",
            &[("id", &ids[0])],
        )
        .await;
    assert!(ca_ids(&r).is_empty(), "{}", r.body);
    let page = refresh(&admin, "microsoft").await;
    let status = by_id(&page, "connection-status").unwrap_or_default();
    assert!(
        status.starts_with("Failed") && status.contains("unknown issuer"),
        "{status}"
    );
    assert!(audit_log(&admin).await.contains("ca_delete"));
}

/// The SMTP half: the same CA list decides whether delivery trusts the
/// upstream SMTP server, and a change applies to the next connection (a
/// session opened under the old list is not reused).
#[tokio::test]
async fn the_ca_list_governs_smtp_delivery_too() {
    use crate::sending::{job_state, microsoft_ready, submit};
    let (fc, server, admin) = microsoft_ready().await;
    let r = submit(&server, "while trusted", "one").await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(fc.wait_for_inbox(1, Duration::from_secs(15)).await.len(), 1);

    let list = admin.get("/settings/management/ca-certificates").await;
    for id in ca_ids(&list) {
        let r = admin
            .submit(
                "/settings/management/ca-certificates",
                "/settings/management/ca-certificates/delete",
                &[("id", &id)],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }
    let r = submit(&server, "after the CA was deleted", "two").await;
    assert!(r.starts_with("250"), "{r}");
    let row = eventually(Duration::from_secs(15), "deferred for TLS", || async {
        job_state(&admin, "after the CA was deleted")
            .await
            .filter(|(state, _)| state == "deferred")
            .map(|(_, row)| row)
    })
    .await;
    assert!(row.contains("unknown issuer"), "{row}");
    assert_eq!(fc.inbox().len(), 1, "nothing went to an untrusted server");

    trust(&admin, &fc).await;
    let id = row
        .split("<tr id=\"job-")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the row carries the job id")
        .to_string();
    let r = admin.submit("/jobs", "/jobs/retry", &[("id", &id)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let inbox = fc.wait_for_inbox(2, Duration::from_secs(15)).await;
    assert_eq!(inbox.len(), 2);
    assert!(String::from_utf8_lossy(&inbox[1].data).contains("after the CA was deleted"));
}

fn ca_pem(
    cn: &str,
    ca: bool,
    validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
) -> String {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    // A leaf says so explicitly: a self-signed certificate without
    // basicConstraints counts as an old (v1) root.
    p.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    if let Some((nb, na)) = validity {
        p.not_before = nb;
        p.not_after = na;
    }
    let key = KeyPair::generate().unwrap();
    p.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn bad_pem_leaf_and_expired_ca_are_refused_with_the_reason() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let now = time::OffsetDateTime::now_utc();
    let expired = ca_pem(
        "Old CA",
        true,
        Some((
            now - time::Duration::days(400),
            now - time::Duration::days(1),
        )),
    );
    let leaf = ca_pem("printer.example", false, None);
    let good = ca_pem("Good CA", true, None);
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n";
    for (pem, reason) in [
        ("hello", "no certificate found"),
        (broken, "malformed"),
        (leaf.as_str(), "not a CA certificate"),
        (expired.as_str(), "expired"),
        // One bad block refuses the whole upload: the good one is not stored either.
        (&format!("{good}{leaf}"), "not a CA certificate"),
    ] {
        let r = admin
            .submit(
                "/settings/management/ca-certificates",
                "/settings/management/ca-certificates",
                &[("pem", pem)],
            )
            .await;
        assert_eq!(r.status, 400, "{reason}: {}", r.body);
        let error = by_id(&r, "ca-error").unwrap_or_default();
        assert!(error.contains(reason), "{reason}: {error}");
        assert!(ca_ids(&r).is_empty(), "nothing stored: {}", r.body);
    }
    let r = admin
        .submit_done(
            "/settings/management/ca-certificates",
            "/settings/management/ca-certificates",
            &[("pem", &good)],
        )
        .await;
    assert_eq!(ca_ids(&r).len(), 1);
    assert!(r.body.contains("Good CA"));
}

#[tokio::test]
async fn add_cn_against_matching_and_mismatching_common_names() {
    for (mode, cn_on, ok) in [
        (CertMode::Trusted, false, true),
        (CertMode::Trusted, true, true),
        (CertMode::CnMismatch, false, true),
        (CertMode::CnMismatch, true, false),
    ] {
        let fc = fakecloud(mode).await;
        let server = server_for(&fc).await;
        let admin = server.setup_admin().await;
        trust(&admin, &fc).await;
        let extra: &[(&str, &str)] = if cn_on { &[("verify_cn", "on")] } else { &[] };
        edit_microsoft(&admin, &fc.entra_endpoint("organizations"), extra).await;
        let page = refresh(&admin, "microsoft").await;
        let status = by_id(&page, "connection-status").unwrap_or_default();
        if ok {
            assert_eq!(status, "Successful", "{mode:?} cn={cn_on}: {}", page.body);
        } else {
            // Said, without the names on the certificate of a host that is
            // no known Microsoft login host.
            assert!(
                status.starts_with("Failed") && status.contains("CN does not match"),
                "{status}"
            );
            assert!(!status.contains("other.example"), "{status}");
        }
    }
}

/// The endpoint field takes any host, so the connection check must not turn
/// into a probe of the internal network: what a closed port, a port that
/// speaks something else, and a server with a certificate for other names
/// do is not told apart beyond what the administrator needs.
#[tokio::test]
async fn the_connection_check_does_not_describe_an_unknown_host() {
    use tokio::io::AsyncWriteExt;
    let fc = fakecloud(CertMode::CnMismatch).await;
    let server = server_for(&fc).await;
    let admin = server.setup_admin().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain_port = plain.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = plain.accept().await {
            let _ = s.write_all(b"220 db.internal ESMTP Postfix\r\n").await;
        }
    });
    let mut seen = Vec::new();
    for port in [closed, plain_port] {
        let endpoint = format!("https://127.0.0.1:{port}/common/oauth2/v2.0");
        edit_microsoft(&admin, &endpoint, &[]).await;
        let status =
            by_id(&refresh(&admin, "microsoft").await, "connection-status").unwrap_or_default();
        assert!(
            status.starts_with("Failed") && status.contains("no HTTPS server answered"),
            "{status}"
        );
        for leak in ["refused", "ESMTP", "Postfix", "not answer with TLS"] {
            assert!(!status.contains(leak), "{status}");
        }
        seen.push(status.replace(&port.to_string(), "PORT"));
    }
    assert_eq!(seen[0], seen[1], "a closed port and an open one read alike");
    // fakecloud's certificate names localhost and 127.0.0.1 with CN
    // other.example: neither name is echoed for 127.0.0.1 (not a known host).
    trust(&admin, &fc).await;
    let endpoint = fc
        .entra_endpoint("organizations")
        .replace("localhost", "127.0.0.1");
    edit_microsoft(&admin, &endpoint, &[("verify_cn", "on")]).await;
    let page = refresh(&admin, "microsoft").await;
    let status = by_id(&page, "connection-status").unwrap_or_default();
    assert!(status.starts_with("Failed"), "{status}");
    assert!(!status.contains("other.example"), "{status}");
    let api = microsoft_api(&admin).await;
    assert!(
        api["connection_reason"]
            .as_str()
            .is_some_and(|r| !r.contains("other.example")),
        "{api}"
    );
    assert_eq!(api["connection_status"], "failed");
}

#[tokio::test]
async fn datetime_page_zone_and_roles() {
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let page = admin.get("/settings/management/datetime").await;
    assert_eq!(page.status, 200);
    assert!(
        by_id(&page, "now-utc").is_some_and(|t| t.contains("UTC")),
        "{}",
        page.body
    );
    assert!(by_id(&page, "clock-sync").is_some());
    let r = admin
        .submit_done(
            "/settings/management/datetime",
            "/settings/management/datetime",
            &[("zone", "+09:00")],
        )
        .await;
    assert!(r.body.contains("Tokyo"), "{}", r.body);
    assert!(
        by_id(&r, "now-local").is_some_and(|t| t.contains("+09:00")),
        "{}",
        r.body
    );
    for zone in ["+03:17", "Mars/Olympus", ""] {
        let r = admin
            .submit(
                "/settings/management/datetime",
                "/settings/management/datetime",
                &[("zone", zone)],
            )
            .await;
        assert_eq!(r.status, 400, "{zone}: {}", r.body);
    }
    let kept = admin.get("/settings/management/datetime").await;
    assert!(kept.body.contains("selected>UTC+09:00"), "{}", kept.body);

    add_user(&admin, "net", "network_admin").await;
    add_user(&admin, "user", "general_user").await;
    let net = Browser::new(&server);
    net.login("net", ADMIN_PASSWORD).await;
    let user = Browser::new(&server);
    user.login("user", ADMIN_PASSWORD).await;
    for path in [
        "/settings/management/datetime",
        "/settings/management/ca-certificates",
    ] {
        assert_eq!(net.get(path).await.status, 200, "network admin: {path}");
        assert_eq!(user.get(path).await.status, 403, "general user: {path}");
    }
}

/// The CA page's form is a plain multipart upload: a DER or PEM file (and
/// the paste box) reaches the server without any script, under the same
/// checks and caps as pasted text.
#[tokio::test]
async fn the_ca_page_uploads_der_and_pem_files_without_script() {
    use base64::Engine as _;
    let server = TestServer::start().await;
    let admin = server.setup_admin().await;
    let page_path = "/settings/management/ca-certificates";
    let page = admin.get(page_path).await;
    assert!(
        page.body.contains("enctype=\"multipart/form-data\"")
            && page.body.contains("name=\"file\"")
            && !page.body.contains("data-into"),
        "{}",
        page.body
    );
    let post = |(content_type, body): (String, Vec<u8>)| {
        admin
            .client
            .post(server.url(page_path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let der_of = |pem: &str| {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let der = der_of(&ca_pem("DER Upload CA", true, None));
    // Without the form's token nothing is stored.
    let r = post(crate::apponly::multipart(&[], &[("file", "ca.der", &der)]))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(ca_ids(&admin.get(page_path).await).is_empty());
    let csrf = page.csrf();
    let r = post(crate::apponly::multipart(
        &[("csrf", &csrf), ("pem", "")],
        &[("file", "ca.der", &der)],
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let list = admin.get(page_path).await;
    assert!(list.body.contains("DER Upload CA"), "{}", list.body);
    assert_eq!(ca_ids(&list).len(), 1);
    // A PEM file and pasted text in one post: both are added.
    let file_pem = ca_pem("PEM File CA", true, None);
    let pasted = ca_pem("Pasted CA", true, None);
    let r = post(crate::apponly::multipart(
        &[("csrf", &csrf), ("pem", &pasted)],
        &[("file", "ca.pem", file_pem.as_bytes())],
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let list = admin.get(page_path).await;
    assert!(list.body.contains("PEM File CA") && list.body.contains("Pasted CA"));
    assert_eq!(ca_ids(&list).len(), 3);
    // A file that is no certificate, and one over the cap: refused with
    // the reason, nothing stored.
    let refused = [
        (
            b"not a certificate at all".to_vec(),
            "not a valid X.509 certificate",
        ),
        (
            vec![0x30; hikyaku::admin::trust::MAX_PEM_TEXT],
            "larger than",
        ),
    ];
    for (bytes, reason) in refused {
        let r = post(crate::apponly::multipart(
            &[("csrf", &csrf)],
            &[("file", "bad.der", &bytes)],
        ))
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{reason}");
        let body = r.text().await.unwrap();
        let error = body
            .split("id=\"ca-error\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
            .to_string();
        assert!(error.contains(reason), "{reason}: {error}");
    }
    assert_eq!(ca_ids(&admin.get(page_path).await).len(), 3);
}
