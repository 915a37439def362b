//! An SMTP client that returns I/O errors instead of panicking (the server
//! may die under it), and test messages that say which transmission they are.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Any byte stream: plain TCP or TLS after STARTTLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn broken(what: String) -> io::Error {
    io::Error::other(what)
}

/// An SMTP client without pipelining; every failure is an `io::Error`.
pub struct Client {
    conn: BufReader<Box<dyn Io>>,
    pub timeout: Duration,
}

/// The outcome of one message: the final reply and the time from the end of
/// data (`.`) to that reply.
#[derive(Debug, Clone)]
pub struct Sent {
    pub reply: String,
    pub latency: Duration,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> io::Result<(Client, String)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            conn: BufReader::new(Box::new(stream)),
            timeout: Duration::from_secs(30),
        };
        let greeting = c.reply().await?;
        Ok((c, greeting))
    }

    /// One (possibly multi-line) reply; EOF and timeouts are errors.
    pub async fn reply(&mut self) -> io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(self.timeout, self.conn.read_line(&mut line))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))??;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {all:?}"),
                ));
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.conn.get_mut();
        w.write_all(bytes).await?;
        w.flush().await
    }

    pub async fn cmd(&mut self, line: &str) -> io::Result<String> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    async fn expect(&mut self, line: &str, code: &str) -> io::Result<String> {
        let r = self.cmd(line).await?;
        if r.starts_with(code) {
            Ok(r)
        } else {
            Err(broken(format!("{line:.40} answered {r}")))
        }
    }

    /// EHLO and AUTH PLAIN.
    pub async fn login_plain(&mut self, user: &str, password: &str) -> io::Result<()> {
        self.expect("EHLO loadgen.local", "250").await?;
        let token = STANDARD.encode(format!("\0{user}\0{password}"));
        self.expect(&format!("AUTH PLAIN {token}"), "235").await?;
        Ok(())
    }

    /// EHLO, STARTTLS (trusting `ca_pem` for `localhost`), EHLO and AUTH
    /// XOAUTH2 with `access_token`: what a mail client does at Exchange.
    pub async fn login_xoauth2(
        self,
        ca_pem: &str,
        user: &str,
        access_token: &str,
    ) -> io::Result<Client> {
        let mut c = self;
        c.expect("EHLO loadgen.local", "250").await?;
        c.expect("STARTTLS", "220").await?;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject as _;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(|e| broken(format!("CA: {e}")))?)
                .map_err(|e| broken(format!("CA: {e}")))?;
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost")
            .map_err(|e| broken(e.to_string()))?;
        let plain = c.conn.into_inner();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, plain)
            .await?;
        let mut c = Client {
            conn: BufReader::new(Box::new(tls)),
            timeout: c.timeout,
        };
        c.expect("EHLO loadgen.local", "250").await?;
        let sasl = STANDARD.encode(format!("user={user}\x01auth=Bearer {access_token}\x01\x01"));
        c.expect(&format!("AUTH XOAUTH2 {sasl}"), "235").await?;
        Ok(c)
    }

    /// MAIL, RCPT, DATA and `message` (which ends with CRLF; dot-stuffed
    /// here). A refusal before the data is returned as the reply.
    pub async fn send(&mut self, from: &str, to: &str, message: &str) -> io::Result<Sent> {
        let start = Instant::now();
        let refused = |reply: String| Sent {
            reply,
            latency: start.elapsed(),
        };
        for (line, code) in [
            (format!("MAIL FROM:<{from}>"), "250"),
            (format!("RCPT TO:<{to}>"), "250"),
            ("DATA".to_string(), "354"),
        ] {
            let r = self.cmd(&line).await?;
            if !r.starts_with(code) {
                return Ok(refused(r));
            }
        }
        let stuffed = message.replace("\r\n.", "\r\n..");
        self.write(stuffed.as_bytes()).await?;
        let start = Instant::now();
        self.write(b".\r\n").await?;
        let reply = self.reply().await?;
        Ok(Sent {
            reply,
            latency: start.elapsed(),
        })
    }

    pub async fn quit(mut self) {
        let _ = self.cmd("QUIT").await;
    }
}

/// A test message: `key` names the message (Subject, Message-ID), `attempt`
/// names this transmission of it (`X-Attempt`), the body has about
/// `body_len` bytes of 76-character lines.
pub fn message(from: &str, key: &str, attempt: &str, body_len: usize) -> String {
    let mut m = format!(
        "From: Load <{from}>\r\nTo: sink@example.com\r\nSubject: load {key}\r\n\
         Message-ID: <{key}@load.hikyaku.test>\r\nX-Attempt: {attempt}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-.:;0123456789";
    let mut written = 0;
    while written < body_len {
        m.push_str(line);
        m.push_str("\r\n");
        written += line.len() + 2;
    }
    if body_len == 0 {
        m.push_str("\r\n");
    }
    m
}

/// The value of the first `name:` header of a received message.
pub fn header(data: &[u8], name: &str) -> Option<String> {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..end]);
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}
