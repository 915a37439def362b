//! Test clients for fakecloud: a reqwest client trusting the run's CA and a
//! raw SMTP client over tokio-rustls.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fakecloud::FakeCloud;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

pub const SMTP_SCOPE: &str =
    "https://outlook.office.com/SMTP.Send offline_access openid email profile";
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub fn http(cloud: &FakeCloud) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cloud.ca_pem().as_bytes()).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn tls_client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub async fn post_form(client: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = client.post(url).form(form).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Payload of an (unsigned) JWT.
pub fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub async fn devicecode(client: &reqwest::Client, cloud: &FakeCloud, scope: &str) -> Value {
    let (status, body) = post_form(
        client,
        &format!("{}/devicecode", cloud.entra_endpoint("common")),
        &[("client_id", "ms-client-id"), ("scope", scope)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn poll(client: &reqwest::Client, cloud: &FakeCloud, device_code: &str) -> (u16, Value) {
    post_form(
        client,
        &format!("{}/token", cloud.entra_endpoint("common")),
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", "ms-client-id"),
            ("device_code", device_code),
        ],
    )
    .await
}

/// Runs the whole device flow for `mailbox` and returns the token response.
pub async fn ms_tokens(client: &reqwest::Client, cloud: &FakeCloud, mailbox: &str) -> Value {
    let dc = devicecode(client, cloud, SMTP_SCOPE).await;
    cloud
        .approve_user_code(dc["user_code"].as_str().unwrap(), mailbox)
        .unwrap();
    let (status, body) = poll(client, cloud, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    use sha2::Digest as _;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

pub const REDIRECT: &str = "http://127.0.0.1:8765";

pub fn google_auth_url(cloud: &FakeCloud, challenge: &str, redirect: &str) -> String {
    let mut url = url::Url::parse(&cloud.google_auth_url()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &cloud.options().google_client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "https://mail.google.com/ openid email")
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .append_pair("state", "st4te")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

/// Consent + code exchange; returns the token response.
pub async fn google_tokens(client: &reqwest::Client, cloud: &FakeCloud, email: &str) -> Value {
    let p = pkce();
    let landing = cloud
        .google_consent(&google_auth_url(cloud, &p.challenge, REDIRECT), email)
        .unwrap();
    let code = query_value(&landing, "code").unwrap();
    let (status, body) = exchange(client, cloud, &code, &p.verifier, REDIRECT, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn exchange(
    client: &reqwest::Client,
    cloud: &FakeCloud,
    code: &str,
    verifier: &str,
    redirect: &str,
    secret: Option<&str>,
) -> (u16, Value) {
    let o = cloud.options();
    post_form(
        client,
        &cloud.google_token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &o.google_client_id),
            ("client_secret", secret.unwrap_or(&o.google_client_secret)),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub fn query_value(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub fn xoauth2(user: &str, token: &str) -> String {
    STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A minimal SMTP client: one command, one (possibly multi-line) reply.
pub struct Smtp {
    s: BufReader<Box<dyn Io>>,
}

impl Smtp {
    /// Plain connection; returns the client and the greeting.
    pub async fn plain(addr: SocketAddr) -> (Self, String) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut c = Smtp {
            s: BufReader::new(Box::new(tcp)),
        };
        let greeting = c.read_reply().await;
        (c, greeting)
    }

    /// Connects, EHLO, STARTTLS, EHLO; returns the post-TLS EHLO reply.
    pub async fn starttls(addr: SocketAddr, ca_pem: &str) -> (Self, String) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut plain = BufReader::new(tcp);
        let greeting = read_reply_from(&mut plain).await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        plain
            .get_mut()
            .write_all(b"EHLO client.test\r\n")
            .await
            .unwrap();
        let ehlo = read_reply_from(&mut plain).await;
        assert!(ehlo.contains("STARTTLS"), "{ehlo}");
        assert!(!ehlo.contains("AUTH"), "{ehlo}");
        plain.get_mut().write_all(b"STARTTLS\r\n").await.unwrap();
        let r = read_reply_from(&mut plain).await;
        assert!(r.starts_with("220 "), "{r}");
        let tls = tokio_rustls::TlsConnector::from(tls_client_config(ca_pem))
            .connect(
                ServerName::try_from("localhost").unwrap(),
                plain.into_inner(),
            )
            .await
            .unwrap();
        let mut c = Smtp {
            s: BufReader::new(Box::new(tls)),
        };
        let ehlo = c.cmd("EHLO client.test").await;
        (c, ehlo)
    }

    /// Implicit TLS; returns the client and the greeting.
    pub async fn implicit(addr: SocketAddr, ca_pem: &str) -> (Self, String) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(tls_client_config(ca_pem))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut c = Smtp {
            s: BufReader::new(Box::new(tls)),
        };
        let greeting = c.read_reply().await;
        (c, greeting)
    }

    pub async fn send_raw(&mut self, data: &[u8]) {
        self.s.get_mut().write_all(data).await.unwrap();
        self.s.get_mut().flush().await.unwrap();
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    pub async fn read_reply(&mut self) -> String {
        read_reply_from(&mut self.s).await
    }

    /// Reply or `None` when the server closed the connection.
    pub async fn try_read_reply(&mut self) -> Option<String> {
        let r = read_reply_from(&mut self.s).await;
        (!r.is_empty()).then_some(r)
    }

    /// Like `plain`/`implicit` but with a deadline on the greeting.
    pub async fn greeting_within(addr: SocketAddr, d: Duration) -> Option<String> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut s = BufReader::new(tcp);
        tokio::time::timeout(d, read_reply_from(&mut s)).await.ok()
    }
}

/// Reads one reply; the empty string means EOF (or a reset).
async fn read_reply_from<S: tokio::io::AsyncBufRead + Unpin>(s: &mut S) -> String {
    let mut out = String::new();
    loop {
        let mut line = String::new();
        match s.read_line(&mut line).await {
            Ok(0) | Err(_) => return out,
            Ok(_) => {}
        }
        out.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return out;
        }
    }
}
