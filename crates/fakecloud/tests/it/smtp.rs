//! Exchange- and Gmail-style SMTP submission with XOAUTH2, and SMTP faults.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fakecloud::{FakeCloud, Options, SmtpFault, SmtpFlavor, SmtpStage};

use crate::support::*;

const MSG: &str = "From: a@b\r\nSubject: hi\r\n\r\n..dot-stuffed line\r\nend\r\n.\r\n";

#[tokio::test]
async fn exchange_accepts_and_refuses() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let tok = ms_tokens(&c, &cloud, "alice@contoso.example").await;
    let at = tok["access_token"].as_str().unwrap();
    let ca = cloud.ca_pem();
    let addr = cloud.exchange_smtp_addr();

    // AUTH before TLS.
    let (mut s, greeting) = Smtp::plain(addr).await;
    assert!(greeting.starts_with("220 "));
    s.cmd("EHLO x").await;
    let r = s
        .cmd(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2("alice@contoso.example", at)
        ))
        .await;
    assert!(
        r.starts_with("530 5.7.0 Must issue a STARTTLS command first"),
        "{r}"
    );

    // Wrong token, then no auth.
    let (mut s, ehlo) = Smtp::starttls(addr, &ca).await;
    assert!(ehlo.contains("AUTH LOGIN XOAUTH2"), "{ehlo}");
    let r = s
        .cmd(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2("alice@contoso.example", "bogus")
        ))
        .await;
    assert_eq!(r, "535 5.7.3 Authentication unsuccessful\r\n");
    let r = s.cmd("MAIL FROM:<alice@contoso.example>").await;
    assert!(
        r.starts_with("530 5.7.57 Client not authenticated to send mail"),
        "{r}"
    );

    // Success, pipelined envelope, dot-stuffing undone.
    let r = s
        .cmd(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2("Alice@Contoso.example", at)
        ))
        .await;
    assert_eq!(r, "235 2.7.0 Authentication successful\r\n");
    s.send_raw(b"MAIL FROM:<alice@contoso.example>\r\nRCPT TO:<x@y.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\n")
        .await;
    for expect in ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354 "] {
        let r = s.read_reply().await;
        assert!(r.starts_with(expect), "{r}");
    }
    s.send_raw(MSG.as_bytes()).await;
    let r = s.read_reply().await;
    assert!(r.starts_with("250 2.0.0 OK"), "{r}");

    // Sending as someone else.
    s.cmd("MAIL FROM:<boss@contoso.example>").await;
    s.cmd("RCPT TO:<x@y.example>").await;
    s.cmd("DATA").await;
    s.send_raw(MSG.as_bytes()).await;
    let r = s.read_reply().await;
    assert!(
        r.starts_with("554 5.2.252 SendAsDenied; alice@contoso.example not allowed to send as boss@contoso.example"),
        "{r}"
    );
    assert_eq!(s.cmd("QUIT").await.get(..3), Some("221"));

    let inbox = cloud.wait_for_inbox(1, Duration::from_secs(2)).await;
    assert_eq!(inbox.len(), 1);
    let m = &inbox[0];
    assert_eq!(m.mail_from, "alice@contoso.example");
    assert_eq!(m.rcpt_to, vec!["x@y.example", "z@y.example"]);
    assert_eq!(m.auth_user, "alice@contoso.example");
    assert_eq!(m.listener, SmtpFlavor::Exchange);
    assert_eq!(
        m.data,
        b"From: a@b\r\nSubject: hi\r\n\r\n.dot-stuffed line\r\nend\r\n".to_vec()
    );

    // Disabled mailbox, expired token, and a token of another provider.
    cloud.disable_smtp_auth("alice@contoso.example");
    let (mut s, _) = Smtp::starttls(addr, &ca).await;
    let r = s
        .cmd(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2("alice@contoso.example", at)
        ))
        .await;
    assert!(r.starts_with("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox"), "{r}");
    cloud.enable_smtp_auth("alice@contoso.example");
    cloud.expire_access_tokens();
    let r = s
        .cmd(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2("alice@contoso.example", at)
        ))
        .await;
    assert!(r.starts_with("535 5.7.3"), "{r}");
    let g = google_tokens(&c, &cloud, "alice@contoso.example").await;
    let r = s
        .cmd(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2("alice@contoso.example", g["access_token"].as_str().unwrap())
        ))
        .await;
    assert!(r.starts_with("535 5.7.3"), "{r}");
}

#[tokio::test]
async fn gmail_error_challenge_and_success() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let tok = google_tokens(&c, &cloud, "henry@gmail.example").await;
    let at = tok["access_token"].as_str().unwrap();
    let ca = cloud.ca_pem();

    let (mut s, ehlo) = Smtp::starttls(cloud.gmail_smtp_addr(), &ca).await;
    assert!(
        ehlo.contains("XOAUTH2") && ehlo.contains("OAUTHBEARER"),
        "{ehlo}"
    );
    let r = s
        .cmd(&format!(
            "AUTH XOAUTH2 {}",
            xoauth2("henry@gmail.example", "ya29.bogus")
        ))
        .await;
    let b64 = r.strip_prefix("334 ").unwrap().trim();
    let json: serde_json::Value = serde_json::from_slice(&STANDARD.decode(b64).unwrap()).unwrap();
    assert_eq!(json["status"], "400");
    assert_eq!(json["schemes"], "Bearer");
    assert_eq!(json["scope"], "https://mail.google.com/");
    let r = s.cmd("").await;
    assert!(
        r.starts_with("535-5.7.8 Username and Password not accepted. For more information, go to\r\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials"),
        "{r}"
    );

    // Implicit TLS, AUTH with a 334 continuation.
    let (mut s, greeting) = Smtp::implicit(cloud.gmail_smtps_addr(), &ca).await;
    assert!(greeting.starts_with("220 "));
    let ehlo = s.cmd("EHLO x").await;
    assert!(!ehlo.contains("STARTTLS"));
    assert_eq!(s.cmd("AUTH XOAUTH2").await, "334 \r\n");
    let r = s.cmd(&xoauth2("henry@gmail.example", at)).await;
    assert_eq!(r, "235 2.7.0 Accepted\r\n");
    let r = s.cmd("MAIL FROM:<other@gmail.example>").await;
    assert!(r.starts_with("555 5.7.1"), "{r}");
    assert!(
        s.cmd("MAIL FROM:<henry@gmail.example>")
            .await
            .starts_with("250")
    );
    assert!(s.cmd("RCPT TO:<x@y.example>").await.starts_with("250"));
    assert!(s.cmd("DATA").await.starts_with("354"));
    s.send_raw(MSG.as_bytes()).await;
    assert!(s.read_reply().await.starts_with("250 2.0.0 OK"));

    // OAUTHBEARER on the STARTTLS listener.
    let (mut s, _) = Smtp::starttls(cloud.gmail_smtp_addr(), &ca).await;
    let ob = STANDARD.encode(format!(
        "n,a=henry@gmail.example,\x01host=localhost\x01port=587\x01auth=Bearer {at}\x01\x01"
    ));
    assert_eq!(
        s.cmd(&format!("AUTH OAUTHBEARER {ob}")).await,
        "235 2.7.0 Accepted\r\n"
    );

    let inbox = cloud.wait_for_inbox(1, Duration::from_secs(2)).await;
    assert_eq!(inbox[0].listener, SmtpFlavor::Gmail);
    assert_eq!(inbox[0].auth_user, "henry@gmail.example");
}

#[tokio::test]
async fn smtp_faults() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let tok = ms_tokens(&c, &cloud, "ivy@contoso.example").await;
    let auth = format!(
        "AUTH XOAUTH2 {}",
        xoauth2("ivy@contoso.example", tok["access_token"].as_str().unwrap())
    );
    let ca = cloud.ca_pem();
    let addr = cloud.exchange_smtp_addr();

    cloud.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::Rcpt,
        code: 452,
        text: "4.5.3 Too many recipients".into(),
    });
    let (mut s, _) = Smtp::starttls(addr, &ca).await;
    assert!(s.cmd(&auth).await.starts_with("235"));
    assert!(
        s.cmd("MAIL FROM:<ivy@contoso.example>")
            .await
            .starts_with("250")
    );
    assert_eq!(
        s.cmd("RCPT TO:<x@y.example>").await,
        "452 4.5.3 Too many recipients\r\n"
    );

    assert!(s.cmd("RSET").await.starts_with("250"));
    s.cmd("MAIL FROM:<ivy@contoso.example>").await;
    cloud.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::EndOfData,
        code: 432,
        text: "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded".into(),
    });
    assert!(s.cmd("RCPT TO:<x@y.example>").await.starts_with("250"));
    assert!(s.cmd("DATA").await.starts_with("354"));
    s.send_raw(MSG.as_bytes()).await;
    assert!(s.read_reply().await.starts_with("432 4.3.2"));

    cloud.set_smtp_fault(SmtpFault::ReplyAt {
        stage: SmtpStage::Connect,
        code: 421,
        text: "4.3.2 Service not available".into(),
    });
    let (mut s, greeting) = Smtp::plain(addr).await;
    assert_eq!(greeting, "421 4.3.2 Service not available\r\n");
    assert_eq!(s.try_read_reply().await, None);

    cloud.set_smtp_fault(SmtpFault::Down);
    let (_, greeting) = Smtp::plain(addr).await;
    assert_eq!(greeting, "");

    cloud.set_smtp_fault(SmtpFault::Hang);
    assert_eq!(
        Smtp::greeting_within(addr, Duration::from_millis(300)).await,
        None
    );

    cloud.set_smtp_fault(SmtpFault::None);
    let (mut s, _) = Smtp::starttls(addr, &ca).await;
    assert!(s.cmd(&auth).await.starts_with("235"));
    s.cmd("MAIL FROM:<ivy@contoso.example>").await;
    s.cmd("RCPT TO:<x@y.example>").await;
    cloud.set_smtp_fault(SmtpFault::CloseMidData);
    assert!(s.cmd("DATA").await.starts_with("354"));
    s.send_raw(b"Subject: partial\r\n").await;
    assert_eq!(s.try_read_reply().await, None);

    cloud.set_smtp_fault(SmtpFault::None);
    let (mut s, _) = Smtp::starttls(addr, &ca).await;
    assert!(s.cmd(&auth).await.starts_with("235"));
    s.cmd("MAIL FROM:<ivy@contoso.example>").await;
    s.cmd("RCPT TO:<x@y.example>").await;
    s.cmd("DATA").await;
    cloud.set_smtp_fault(SmtpFault::Hang);
    s.send_raw(MSG.as_bytes()).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.read_reply())
            .await
            .is_err()
    );
    assert!(cloud.inbox().is_empty());
}

/// hikyaku delivers with lettre's low-level connection: make sure the two
/// agree on the wire (EHLO parsing, STARTTLS, XOAUTH2, DATA).
#[tokio::test]
async fn lettre_can_submit_to_both_flavors() {
    use lettre::address::Envelope;
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;

    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let ms = ms_tokens(&c, &cloud, "liz@contoso.example").await;
    let g = google_tokens(&c, &cloud, "liz@gmail.example").await;
    let hello = ClientId::Domain("hikyaku.test".into());
    for (addr, user, token) in [
        (cloud.exchange_smtp_addr(), "liz@contoso.example", &ms),
        (cloud.gmail_smtp_addr(), "liz@gmail.example", &g),
    ] {
        let tls = TlsParameters::builder("localhost".into())
            .add_root_certificate(Certificate::from_pem(cloud.ca_pem().as_bytes()).unwrap())
            .build_rustls()
            .unwrap();
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            ("localhost", addr.port()),
            Some(Duration::from_secs(5)),
            &hello,
            None,
            None,
        )
        .await
        .unwrap();
        conn.starttls(tls, &hello).await.unwrap();
        let creds = Credentials::new(user.into(), token["access_token"].as_str().unwrap().into());
        conn.auth(&[Mechanism::Xoauth2], &creds).await.unwrap();
        let envelope = Envelope::new(
            Some(user.parse().unwrap()),
            vec!["to@example.net".parse().unwrap()],
        )
        .unwrap();
        let resp = conn
            .send(&envelope, b"Subject: t\r\n\r\n.leading dot\r\n")
            .await
            .unwrap();
        assert_eq!(resp.code().to_string(), "250");
        conn.quit().await.unwrap();
    }
    let inbox = cloud.wait_for_inbox(2, Duration::from_secs(2)).await;
    assert_eq!(inbox.len(), 2);
    // lettre always appends CRLF.CRLF, so a message that already ends in
    // CRLF arrives with one extra empty line; the stuffed dot is undone.
    assert_eq!(
        inbox[0].data,
        b"Subject: t\r\n\r\n.leading dot\r\n\r\n".to_vec()
    );
}
