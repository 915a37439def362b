//! A small HTTP proxy for the tests of the outbound proxy settings.

use std::sync::Arc;

/// A small HTTP proxy that only does `CONNECT` (as HTTPS clients use it), on
/// 127.0.0.1: it records every tunnel's target, can demand Basic credentials
/// (407 otherwise), and can be stopped to play a dead proxy.
pub struct ConnectProxy {
    pub addr: std::net::SocketAddr,
    targets: Arc<std::sync::Mutex<Vec<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ConnectProxy {
    /// Starts the proxy; `credentials` = the (user, password) it demands.
    pub async fn start(credentials: Option<(&str, &str)>) -> Self {
        use base64::Engine;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let expected = credentials
            .map(|(u, p)| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
        let seen = targets.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = seen.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let _ = tunnel(client, seen, expected).await;
                });
            }
        });
        Self {
            addr,
            targets,
            task: Some(task),
        }
    }

    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// How many CONNECT requests arrived (accepted or not).
    pub fn connects(&self) -> usize {
        self.targets.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// The `host:port` of every CONNECT request, in order.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Stops listening: new connections to the port are refused.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn tunnel(
    mut client: tokio::net::TcpStream,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    expected: Option<String>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "CONNECT" {
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    if let Ok(mut s) = seen.lock() {
        s.push(target.to_string());
    }
    if let Some(expected) = expected {
        // The scheme is case-insensitive, the credentials are not.
        let ok = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
            .and_then(|(_, v)| v.trim().split_once(' '))
            .is_some_and(|(scheme, creds)| {
                scheme.eq_ignore_ascii_case("basic") && creds.trim() == expected
            });
        if !ok {
            client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    let mut upstream = match tokio::net::TcpStream::connect(target).await {
        Ok(s) => s,
        Err(_) => {
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
