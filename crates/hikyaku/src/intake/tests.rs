//! Session tests: `run_session` driven over `tokio::io::duplex` (Stalwart's
//! DummyIo idea) with an in-memory sink, plus one `serve` test on loopback.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio_util::sync::CancellationToken;

use super::*;

const USER: &str = "printer";
const PASSWORD: &str = "correct horse";
const STRANGER: &str = "192.0.2.10:40000";
const FRIEND: &str = "192.0.2.99:40000";

/// Records accepted messages; knows one user and one allowlisted address.
#[derive(Default)]
struct TestSink {
    accepted: Mutex<Vec<Submission>>,
    /// Returned (once) by the next `accept` instead of success.
    next_error: Mutex<Option<SinkError>>,
    accept_delay: Option<Duration>,
    /// Signalled when `accept` is entered.
    accept_started: tokio::sync::Notify,
    /// The allowlist cannot be read (the store is away).
    allowlist_down: bool,
}

impl TestSink {
    fn accepted(&self) -> Vec<Submission> {
        self.accepted.lock().unwrap().clone()
    }
}

impl IntakeSink for TestSink {
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        _peer: IpAddr,
    ) -> Result<Option<Submitter>, SinkError> {
        Ok((user == USER && password == PASSWORD).then(|| Submitter {
            name: USER.to_owned(),
            account_id: Some(7),
        }))
    }

    async fn allowlisted(&self, peer: IpAddr) -> Result<Option<Submitter>, SinkError> {
        if self.allowlist_down {
            return Err(SinkError::Temporary("database unreachable".into()));
        }
        Ok(
            (peer == FRIEND.parse::<SocketAddr>().unwrap().ip()).then(|| Submitter {
                name: "lan-printer".to_owned(),
                account_id: None,
            }),
        )
    }

    async fn accept(&self, submission: Submission) -> Result<String, SinkError> {
        self.accept_started.notify_one();
        if let Some(delay) = self.accept_delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(error) = self.next_error.lock().unwrap().take() {
            return Err(error);
        }
        let mut accepted = self.accepted.lock().unwrap();
        accepted.push(submission);
        Ok(format!("Q{}", accepted.len()))
    }
}

fn limits() -> Limits {
    Limits {
        max_message_size: 10_000,
        max_recipients: 3,
        idle_timeout: Duration::from_secs(10),
        auth_failure_delay: Duration::from_millis(10),
        ..Limits::default()
    }
}

/// A loopback-style listener: no TLS, AUTH allowed in plaintext.
fn plain_config() -> ListenerConfig {
    ListenerConfig {
        hostname: "mx.test".to_owned(),
        tls: None,
        implicit_tls: false,
        require_tls_for_auth: false,
        limits: limits(),
    }
}

/// A LAN-style listener: STARTTLS offered, AUTH only inside TLS.
fn tls_config(server: Arc<rustls::ServerConfig>) -> ListenerConfig {
    ListenerConfig {
        tls: Some(server),
        require_tls_for_auth: true,
        ..plain_config()
    }
}

/// A CA, a leaf for `mx.test` signed by it, and configs for both ends.
fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hikyaku test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["mx.test".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &*ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn plain_auth() -> String {
    STANDARD.encode(format!("\0{USER}\0{PASSWORD}"))
}

/// Runs a whole session on `input` (written at once, i.e. fully pipelined)
/// and returns everything the server said.
async fn transcript(
    config: ListenerConfig,
    sink: &Arc<TestSink>,
    peer: &str,
    input: &[u8],
) -> String {
    let (client, server) = tokio::io::duplex(1 << 20);
    let peer: SocketAddr = peer.parse().unwrap();
    let sink = Arc::clone(sink);
    let session = tokio::spawn(async move {
        run_session(server, peer, &config, &*sink, &CancellationToken::new()).await
    });
    let (mut rd, mut wr) = tokio::io::split(client);
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        wr.write_all(&input).await.unwrap();
        wr
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut out))
        .await
        .expect("session did not end")
        .unwrap();
    session.await.unwrap().unwrap();
    drop(writer.await.unwrap());
    String::from_utf8(out).unwrap()
}

/// The reply codes of a transcript, one per reply (last line of multi-line ones).
fn codes(out: &str) -> Vec<u16> {
    out.split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| l[..3].parse().unwrap())
        .collect()
}

/// An interactive client.
struct Client<T> {
    io: BufReader<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Client<T> {
    fn new(io: T) -> Self {
        Self {
            io: BufReader::new(io),
        }
    }

    /// Reads one (possibly multi-line) reply; "" on EOF.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut line))
                .await
                .expect("no reply")
                .unwrap();
            all.push_str(&line);
            if n == 0 || line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    async fn send(&mut self, raw: &str) {
        self.io.get_mut().write_all(raw.as_bytes()).await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }
}

fn spawn_session(
    config: ListenerConfig,
    sink: &Arc<TestSink>,
    peer: &str,
    shutdown: CancellationToken,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<Result<(), IntakeError>>,
) {
    let (client, server) = tokio::io::duplex(1 << 16);
    let peer: SocketAddr = peer.parse().unwrap();
    let sink = Arc::clone(sink);
    let handle =
        tokio::spawn(async move { run_session(server, peer, &config, &*sink, &shutdown).await });
    (client, handle)
}

#[tokio::test]
async fn happy_path_with_pipelining() {
    let sink = Arc::new(TestSink::default());
    let input = format!(
        "EHLO client.test\r\nAUTH PLAIN {}\r\nMAIL FROM:<app@example.com> SIZE=60\r\n\
         RCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n\
         Subject: hi\r\n\r\nHello.\r\n.\r\nQUIT\r\n",
        plain_auth()
    );
    let out = transcript(plain_config(), &sink, STRANGER, input.as_bytes()).await;
    assert!(
        out.starts_with("220 mx.test ESMTP hikyaku\r\n250-mx.test\r\n"),
        "{out}"
    );
    for capability in [
        "SIZE 10000",
        "8BITMIME",
        "SMTPUTF8",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
    ] {
        assert!(
            out.contains(&format!("250-{capability}\r\n"))
                || out.contains(&format!("250 {capability}\r\n")),
            "{capability}: {out}"
        );
    }
    assert!(!out.contains("STARTTLS"), "no TLS configured: {out}");
    assert_eq!(
        codes(&out),
        [220, 250, 235, 250, 250, 250, 354, 250, 221],
        "{out}"
    );
    assert!(out.contains("250 2.0.0 Ok: queued as Q1\r\n"), "{out}");
    assert!(out.ends_with("221 2.0.0 Bye\r\n"));
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    let m = &accepted[0];
    assert_eq!(
        m.submitter,
        Submitter {
            name: USER.into(),
            account_id: Some(7)
        }
    );
    assert_eq!(m.helo, "client.test");
    assert_eq!(m.envelope.mail_from, "app@example.com");
    assert_eq!(m.envelope.rcpt_to, ["a@example.org", "b@example.org"]);
    assert_eq!(m.data, b"Subject: hi\r\n\r\nHello.\r\n");
    assert_eq!(m.peer, STRANGER.parse::<SocketAddr>().unwrap());
    assert!(!m.tls);
}

#[tokio::test]
async fn auth_plain_with_continuation_and_auth_login() {
    let sink = Arc::new(TestSink::default());
    let login = |user: &str, pass: &str| {
        format!(
            "EHLO c\r\nAUTH LOGIN\r\n{}\r\n{}\r\nMAIL FROM:<>\r\nQUIT\r\n",
            STANDARD.encode(user),
            STANDARD.encode(pass)
        )
    };
    let out = transcript(
        plain_config(),
        &sink,
        STRANGER,
        login(USER, PASSWORD).as_bytes(),
    )
    .await;
    assert!(
        out.contains(
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
        ),
        "{out}"
    );
    assert_eq!(codes(&out), [220, 250, 334, 334, 235, 250, 221], "{out}");

    let out = transcript(
        plain_config(),
        &sink,
        STRANGER,
        login(USER, "wrong").as_bytes(),
    )
    .await;
    assert!(
        out.contains("535 5.7.8 Authentication credentials invalid\r\n"),
        "{out}"
    );
    assert!(
        out.contains("530 5.7.0 Authentication required\r\n"),
        "{out}"
    );

    let input = format!(
        "EHLO c\r\nAUTH PLAIN\r\n{}\r\nAUTH PLAIN\r\nQUIT\r\n",
        plain_auth()
    );
    let out = transcript(plain_config(), &sink, STRANGER, input.as_bytes()).await;
    assert_eq!(codes(&out), [220, 250, 334, 235, 503, 221], "{out}");

    // Cancel, junk and an unknown mechanism.
    let input = "EHLO c\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN !!!\r\nAUTH CRAM-MD5\r\nAUTH\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, STRANGER, input.as_bytes()).await;
    assert!(
        out.contains("501 5.0.0 Authentication cancelled\r\n"),
        "{out}"
    );
    assert!(
        out.contains("504 5.5.4 Unrecognized authentication type\r\n"),
        "{out}"
    );
    assert_eq!(
        codes(&out),
        [220, 250, 334, 501, 501, 504, 501, 221],
        "{out}"
    );
    assert!(sink.accepted().is_empty());
}

#[tokio::test]
async fn auth_refused_before_tls() {
    let (server, _) = tls_pair();
    let sink = Arc::new(TestSink::default());
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
        plain_auth()
    );
    let out = transcript(tls_config(server), &sink, STRANGER, input.as_bytes()).await;
    assert!(
        out.contains("250-STARTTLS\r\n") || out.contains("250 STARTTLS\r\n"),
        "{out}"
    );
    assert!(
        !out.contains("AUTH"),
        "AUTH must not be offered in plaintext: {out}"
    );
    assert!(
        out.contains("538 5.7.11 Encryption required for requested authentication mechanism\r\n"),
        "{out}"
    );
    assert!(
        out.contains("530 5.7.0 Authentication required\r\n"),
        "{out}"
    );
}

#[tokio::test]
async fn starttls_discards_pipelined_plaintext_and_resets_state() {
    let (server_tls, client_tls) = tls_pair();
    let sink = Arc::new(TestSink::default());
    let (io, session) = spawn_session(
        tls_config(server_tls),
        &sink,
        FRIEND,
        CancellationToken::new(),
    );
    let mut c = Client::new(io);
    assert_eq!(c.reply().await, "220 mx.test ESMTP hikyaku\r\n");
    assert!(c.cmd("EHLO c").await.contains("STARTTLS"));
    // The injection of CVE-2011-0411: plaintext pipelined behind STARTTLS.
    c.send("STARTTLS\r\nMAIL FROM:<injected@evil>\r\n").await;
    assert_eq!(c.reply().await, "220 2.0.0 Ready to start TLS\r\n");
    let connector = tokio_rustls::TlsConnector::from(client_tls);
    let tls = connector
        .connect(ServerName::try_from("mx.test").unwrap(), c.io.into_inner())
        .await
        .unwrap();
    let mut c = Client::new(tls);
    // No second greeting, and the injected MAIL was not run: the first reply is NOOP's.
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
    // EHLO is forgotten (RFC 3207 §4.2).
    assert_eq!(
        c.cmd("MAIL FROM:<a@b>").await,
        "503 5.5.1 Send HELO/EHLO first\r\n"
    );
    let ehlo = c.cmd("EHLO c").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(c.cmd("STARTTLS").await, "503 5.5.1 TLS already active\r\n");
    assert!(
        c.cmd(&format!("AUTH PLAIN {}", plain_auth()))
            .await
            .starts_with("235 ")
    );
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("250 "));
    assert!(c.cmd("RCPT TO:<c@d>").await.starts_with("250 "));
    assert!(c.cmd("DATA").await.starts_with("354 "));
    assert_eq!(c.cmd("secret\r\n.").await, "250 2.0.0 Ok: queued as Q1\r\n");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    session.await.unwrap().unwrap();
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].tls);
    assert_eq!(
        accepted[0].submitter.name, USER,
        "AUTH wins over the allowlist"
    );
    assert_eq!(accepted[0].envelope.mail_from, "a@b");
}

#[tokio::test]
async fn implicit_tls_greets_after_handshake() {
    let (server_tls, client_tls) = tls_pair();
    let sink = Arc::new(TestSink::default());
    let config = ListenerConfig {
        implicit_tls: true,
        ..tls_config(server_tls)
    };
    let (io, session) = spawn_session(config, &sink, STRANGER, CancellationToken::new());
    let connector = tokio_rustls::TlsConnector::from(client_tls);
    let tls = connector
        .connect(ServerName::try_from("mx.test").unwrap(), io)
        .await
        .unwrap();
    let mut c = Client::new(tls);
    assert_eq!(c.reply().await, "220 mx.test ESMTP hikyaku\r\n");
    let ehlo = c.cmd("EHLO c").await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    session.await.unwrap().unwrap();
}

#[tokio::test]
async fn allowlisted_peer_needs_no_auth() {
    let sink = Arc::new(TestSink::default());
    let input = "HELO printer\r\nMAIL FROM:<scan@lan>\r\nRCPT TO:<me@example.com>\r\nDATA\r\nscan\r\n.\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
    assert_eq!(codes(&out), [220, 250, 250, 250, 354, 250, 221], "{out}");
    assert!(out.contains("250 mx.test\r\n"), "{out}");
    let accepted = sink.accepted();
    assert_eq!(
        accepted[0].submitter,
        Submitter {
            name: "lan-printer".into(),
            account_id: None
        }
    );
    assert_eq!(accepted[0].data, b"scan\r\n");
}

#[tokio::test]
async fn stranger_without_auth_is_refused() {
    let sink = Arc::new(TestSink::default());
    let input = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, STRANGER, input.as_bytes()).await;
    assert!(
        out.contains("530 5.7.0 Authentication required\r\n"),
        "{out}"
    );
    assert_eq!(codes(&out), [220, 250, 530, 503, 503, 221], "{out}");
    assert!(sink.accepted().is_empty());
}

#[tokio::test]
async fn oversized_message_is_refused_and_session_goes_on() {
    let sink = Arc::new(TestSink::default());
    let line = format!("{}\r\n", "x".repeat(98));
    let big = line.repeat(200); // 20_000 octets > 10_000
    let input = format!(
        "EHLO c\r\nMAIL FROM:<a@b> SIZE=20000\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n{big}.\r\n\
         MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nsmall\r\n.\r\nQUIT\r\n"
    );
    let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
    assert_eq!(
        out.matches("552 5.3.4 Message size exceeds fixed maximum message size\r\n")
            .count(),
        2,
        "{out}"
    );
    assert_eq!(
        codes(&out),
        [220, 250, 552, 250, 250, 354, 552, 250, 250, 354, 250, 221],
        "{out}"
    );
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].data, b"small\r\n");
}

#[tokio::test]
async fn too_many_recipients() {
    let sink = Arc::new(TestSink::default());
    let input = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\nRCPT TO:<3@x>\r\nRCPT TO:<4@x>\r\nDATA\r\nm\r\n.\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
    assert!(out.contains("452 4.5.3 Too many recipients\r\n"), "{out}");
    assert_eq!(sink.accepted()[0].envelope.rcpt_to, ["1@x", "2@x", "3@x"]);
}

#[tokio::test]
async fn bare_newlines_and_smuggling_are_refused() {
    for evil in [
        "\n.\r\n",
        "\n.\n",
        "\r.\r",
        "\r.\r\n",
        "\r\n.\n",
        "\r\n.\r\r\n",
        "\n.\r\r\n",
        "bare\nlf",
        "bare\rcr",
    ] {
        let sink = Arc::new(TestSink::default());
        let input = format!(
            "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\nhello{evil}\
             MAIL FROM:<smuggled@evil>\r\nRCPT TO:<victim@x>\r\nDATA\r\nsmuggled\r\n\r\n.\r\nQUIT\r\n"
        );
        let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
        assert_eq!(
            codes(&out),
            [220, 250, 250, 250, 354, 554, 221],
            "{evil:?}: {out}"
        );
        assert!(
            out.contains("554 5.6.0 Bare LF or CR not allowed\r\n"),
            "{out}"
        );
        assert!(sink.accepted().is_empty(), "{evil:?}");
    }
    // In commands too.
    let sink = Arc::new(TestSink::default());
    let input = "EHLO c\nMAIL FROM:<a@b>\rRCPT TO:<c@d>\r\nNOOP\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
    assert_eq!(codes(&out), [220, 554, 554, 250, 221], "{out}");
}

#[tokio::test]
async fn dot_stuffing_is_undone() {
    let sink = Arc::new(TestSink::default());
    let input = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n..first\r\nmid\r\n...\r\n.x\r\n.\r\n\
                 MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
    assert_eq!(
        codes(&out),
        [220, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221],
        "{out}"
    );
    let accepted = sink.accepted();
    assert_eq!(accepted[0].data, b".first\r\nmid\r\n..\r\nx\r\n");
    assert_eq!(accepted[1].data, b"", "an empty message is a message");
}

#[tokio::test]
async fn sink_errors_map_to_replies() {
    for (error, expected) in [
        (
            SinkError::Temporary("queue busy\r\n250 forged".into()),
            "451 4.3.0 queue busy  250 forged\r\n",
        ),
        (
            SinkError::StorageFull,
            "452 4.3.1 Insufficient system storage\r\n",
        ),
        (
            SinkError::Permanent("no account".into()),
            "554 5.3.0 no account\r\n",
        ),
    ] {
        let sink = Arc::new(TestSink::default());
        *sink.next_error.lock().unwrap() = Some(error);
        let input = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nm\r\n.\r\nQUIT\r\n";
        let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
        assert!(out.contains(expected), "{out}");
        assert!(!out.contains("250 2.0.0 Ok: queued"), "{out}");
        assert!(sink.accepted().is_empty());
    }
}

#[tokio::test]
async fn idle_and_session_timeouts() {
    let sink = Arc::new(TestSink::default());
    let mut config = plain_config();
    config.limits.idle_timeout = Duration::from_millis(200);
    let (io, session) = spawn_session(config.clone(), &sink, FRIEND, CancellationToken::new());
    let mut c = Client::new(io);
    c.reply().await;
    assert_eq!(
        c.reply().await,
        "421 4.4.2 mx.test Error: timeout exceeded\r\n"
    );
    assert_eq!(c.reply().await, "", "closed");
    session.await.unwrap().unwrap();

    // Busy but never done: the session deadline ends it, also mid-DATA.
    config.limits.session_timeout = Duration::from_millis(600);
    let (io, session) = spawn_session(config, &sink, FRIEND, CancellationToken::new());
    let mut c = Client::new(io);
    c.reply().await;
    c.cmd("EHLO c").await;
    c.cmd("MAIL FROM:<a@b>").await;
    c.cmd("RCPT TO:<c@d>").await;
    c.cmd("DATA").await;
    let started = std::time::Instant::now();
    let reply = loop {
        // The server may hang up between our read and this write.
        let _ = c.io.get_mut().write_all(b"more data\r\n").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 256];
        if let Ok(n) = tokio::time::timeout(Duration::from_millis(10), c.io.read(&mut buf)).await {
            break String::from_utf8_lossy(&buf[..n.unwrap()]).into_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "session deadline ignored"
        );
    };
    assert_eq!(reply, "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    session.await.unwrap().unwrap();
    assert!(sink.accepted().is_empty());
}

#[tokio::test]
async fn repeated_auth_failures_disconnect() {
    let sink = Arc::new(TestSink::default());
    let bad = STANDARD.encode(format!("\0{USER}\0guess"));
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {bad}\r\nAUTH PLAIN {bad}\r\nAUTH PLAIN {bad}\r\nAUTH PLAIN {}\r\n",
        plain_auth()
    );
    let started = std::time::Instant::now();
    let out = transcript(plain_config(), &sink, STRANGER, input.as_bytes()).await;
    // protocols.md §7: 535 every time, the last one then disconnects.
    assert_eq!(codes(&out), [220, 250, 535, 535, 535], "{out}");
    assert!(
        out.ends_with(
            "535 5.7.8 Authentication credentials invalid; too many failures, closing the connection\r\n"
        ),
        "{out}"
    );
    // 10 + 20 + 30 ms of growing delay.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn long_lines_are_refused() {
    let sink = Arc::new(TestSink::default());
    let long_command = format!("NOOP {}\r\n", "x".repeat(5000));
    let long_text = "y".repeat(1200);
    let input = format!(
        "EHLO c\r\n{long_command}NOOP\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nok\r\n{long_text}\r\n.\r\nQUIT\r\n"
    );
    let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
    assert_eq!(
        codes(&out),
        [220, 250, 500, 250, 250, 250, 354, 500, 221],
        "{out}"
    );
    assert_eq!(
        out.matches("500 5.5.2 Line too long\r\n").count(),
        2,
        "{out}"
    );
    assert!(sink.accepted().is_empty());
}

#[tokio::test]
async fn eight_bit_and_utf8_are_preserved() {
    let sink = Arc::new(TestSink::default());
    let body: &[u8] = b"Subject: =?UTF-8?B?5a6b5YWI?=\r\nFrom: \xe5\xae\x9b\xe5\x85\x88 <u@x>\r\n\r\n\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \x80\xff\xfe latin1 \xe9\r\n";
    let mut input = b"EHLO c\r\nMAIL FROM:<\xe3\x83\xa6\xe3\x83\xbc\xe3\x82\xb6@\xe4\xbe\x8b\xe3\x81\x88.jp> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n".to_vec();
    input.extend_from_slice(body);
    input.extend_from_slice(b".\r\nQUIT\r\n");
    let out = transcript(plain_config(), &sink, FRIEND, &input).await;
    assert_eq!(codes(&out), [220, 250, 250, 250, 354, 250, 221], "{out}");
    let accepted = sink.accepted();
    assert_eq!(accepted[0].data, body);
    assert_eq!(accepted[0].envelope.mail_from, "ユーザ@例え.jp");
}

#[tokio::test]
async fn a_trickled_command_line_is_cut_off() {
    let sink = Arc::new(TestSink::default());
    let mut config = plain_config();
    // Each byte comes well within the idle timeout; the line as a whole not.
    config.limits.idle_timeout = Duration::from_secs(10);
    config.limits.command_line_timeout = Duration::from_millis(300);
    let (io, session) = spawn_session(config, &sink, FRIEND, CancellationToken::new());
    let mut c = Client::new(io);
    c.reply().await;
    let started = std::time::Instant::now();
    for b in b"EHLO slow.example" {
        if c.io.get_mut().write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.reply().await,
        "421 4.4.2 mx.test Error: transfer too slow\r\n"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    session.await.unwrap().unwrap();
}

#[tokio::test]
async fn data_below_the_minimum_rate_is_cut_off_and_nothing_stored() {
    let sink = Arc::new(TestSink::default());
    let mut config = plain_config();
    config.limits.idle_timeout = Duration::from_secs(10);
    config.limits.data_grace = Duration::from_millis(300);
    config.limits.min_data_rate = 1000;
    let (io, session) = spawn_session(config, &sink, FRIEND, CancellationToken::new());
    let mut c = Client::new(io);
    c.reply().await;
    c.cmd("EHLO c").await;
    c.cmd("MAIL FROM:<a@b>").await;
    c.cmd("RCPT TO:<c@d>").await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    // 20 octets a tenth of a second: 200 octets/s, under the 1000 asked for.
    let reply = loop {
        let _ = c.io.get_mut().write_all(b"slow line of data\r\n").await;
        let mut buf = [0u8; 256];
        if let Ok(n) = tokio::time::timeout(Duration::from_millis(100), c.io.read(&mut buf)).await {
            break String::from_utf8_lossy(&buf[..n.unwrap()]).into_owned();
        }
    };
    assert_eq!(reply, "421 4.4.2 mx.test Error: transfer too slow\r\n");
    session.await.unwrap().unwrap();
    assert!(sink.accepted().is_empty());
}

#[tokio::test]
async fn a_fast_client_is_not_cut_off_by_the_rate() {
    let sink = Arc::new(TestSink::default());
    let mut config = plain_config();
    config.limits.data_grace = Duration::from_millis(100);
    config.limits.min_data_rate = 1000;
    let body = "y".repeat(78) + "\r\n";
    let input = format!(
        "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n{}.\r\nQUIT\r\n",
        body.repeat(100)
    );
    let out = transcript(config, &sink, FRIEND, input.as_bytes()).await;
    assert_eq!(codes(&out), [220, 250, 250, 250, 354, 250, 221], "{out}");
}

#[tokio::test]
async fn nul_bytes_are_refused() {
    let sink = Arc::new(TestSink::default());
    let input = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\nbin\x00ary\r\n.\r\n\
                  MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nclean\r\n.\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, FRIEND, input).await;
    assert!(
        out.contains(
            "554 5.6.0 NUL bytes not allowed in a message; encode binary content (base64)\r\n"
        ),
        "{out}"
    );
    assert_eq!(
        codes(&out),
        [220, 250, 250, 250, 354, 554, 250, 250, 354, 250, 221],
        "{out}"
    );
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1, "only the clean message");
    assert_eq!(accepted[0].data, b"clean\r\n");
}

#[tokio::test]
async fn misc_commands_and_ordering() {
    let sink = Arc::new(TestSink::default());
    let input = "MAIL FROM:<a@b>\r\nFOO\r\nEHLO c\r\nRCPT TO:<c@d>\r\nDATA\r\nVRFY x\r\nHELP\r\nEXPN x\r\n\
                 MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nRSET\r\nRCPT TO:<c@d>\r\nMAIL FROM:<a@b>\r\nDATA\r\n\
                 BDAT 4 LAST\r\nabcdNOOP\r\nMAIL FROM:a@b\r\nRCPT TO:<>\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
    assert_eq!(
        codes(&out),
        [
            220, 503, 500, 250, 503, 503, 252, 214, 502, 250, 503, 250, 503, 250, 503, 502, 250,
            501, 503, 221
        ],
        "{out}"
    );
    assert!(
        out.contains("500 5.5.2 Syntax error, command unrecognized\r\n"),
        "{out}"
    );
    assert!(out.contains("252 2.5.0 "), "{out}");
    assert!(
        out.contains("502 5.5.1 CHUNKING not supported\r\n"),
        "{out}"
    );
}

#[tokio::test]
async fn parameters_that_are_not_offered_are_refused() {
    let sink = Arc::new(TestSink::default());
    let input = "EHLO c\r\nSTARTTLS now\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\nQUIT\r\n";
    let (server_tls, _) = tls_pair();
    let out = transcript(tls_config(server_tls), &sink, FRIEND, input.as_bytes()).await;
    assert_eq!(codes(&out), [220, 250, 501, 555, 250, 221], "{out}");
    assert!(
        out.contains("501 5.5.4 Syntax: STARTTLS (no parameters)\r\n"),
        "{out}"
    );
    assert!(
        out.contains("555 5.5.4 BODY=BINARYMIME is not supported"),
        "{out}"
    );
}

#[tokio::test]
async fn shutdown_waits_for_accept_then_says_goodbye() {
    let sink = Arc::new(TestSink {
        accept_delay: Some(Duration::from_millis(300)),
        ..TestSink::default()
    });
    let shutdown = CancellationToken::new();
    let (io, session) = spawn_session(plain_config(), &sink, FRIEND, shutdown.clone());
    let mut c = Client::new(io);
    c.reply().await;
    c.cmd("EHLO c").await;
    c.cmd("MAIL FROM:<a@b>").await;
    c.cmd("RCPT TO:<c@d>").await;
    c.cmd("DATA").await;
    c.send("m\r\n.\r\n").await;
    sink.accept_started.notified().await;
    shutdown.cancel();
    assert_eq!(c.reply().await, "250 2.0.0 Ok: queued as Q1\r\n");
    assert_eq!(
        c.reply().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    session.await.unwrap().unwrap();
    assert_eq!(sink.accepted().len(), 1);
}

#[tokio::test]
async fn disconnect_before_final_dot_stores_nothing() {
    let sink = Arc::new(TestSink::default());
    let (io, session) = spawn_session(plain_config(), &sink, FRIEND, CancellationToken::new());
    let mut c = Client::new(io);
    c.reply().await;
    c.cmd("EHLO c").await;
    c.cmd("MAIL FROM:<a@b>").await;
    c.cmd("RCPT TO:<c@d>").await;
    c.cmd("DATA").await;
    c.send("almost\r\n").await;
    drop(c);
    session.await.unwrap().unwrap();
    assert!(sink.accepted().is_empty());
}

#[tokio::test]
async fn serve_limits_connections_per_client() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = plain_config();
    config.limits.max_connections_per_client = 2;
    let sink = Arc::new(TestSink::default());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, config, Arc::clone(&sink), shutdown.clone()));

    let connect =
        move || async move { Client::new(tokio::net::TcpStream::connect(addr).await.unwrap()) };
    let mut first = connect().await;
    assert!(first.reply().await.starts_with("220 "));
    let mut second = connect().await;
    assert!(second.reply().await.starts_with("220 "));
    let mut third = connect().await;
    assert_eq!(
        third.reply().await,
        "421 4.7.0 mx.test Too many connections\r\n"
    );
    assert_eq!(third.reply().await, "", "closed");

    // A slot frees up once a session ends.
    assert_eq!(first.cmd("QUIT").await, "221 2.0.0 Bye\r\n");
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut fourth = loop {
        let mut c = connect().await;
        if c.reply().await.starts_with("220 ") {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Shutdown: idle sessions are told, and serve returns.
    shutdown.cancel();
    assert_eq!(
        second.reply().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    assert_eq!(
        fourth.reply().await,
        "421 4.3.2 mx.test Service shutting down\r\n"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_unreadable_allowlist_is_a_temporary_refusal() {
    let sink = Arc::new(TestSink {
        allowlist_down: true,
        ..TestSink::default()
    });
    let input = "EHLO c\r\nMAIL FROM:<a@b>\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, FRIEND, input.as_bytes()).await;
    // 451, not 530: a device on the allowlist retries instead of giving up.
    assert_eq!(codes(&out), [220, 250, 451, 221], "{out}");
    assert!(out.contains("451 4.3.0"), "{out}");
}

#[tokio::test]
async fn nul_bytes_in_addresses_are_refused() {
    let sink = Arc::new(TestSink::default());
    let input =
        b"EHLO c\r\nMAIL FROM:<a\x00b@c>\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c\x00@d>\r\nQUIT\r\n";
    let out = transcript(plain_config(), &sink, FRIEND, input).await;
    assert_eq!(codes(&out), [220, 250, 501, 250, 501, 221], "{out}");
}
