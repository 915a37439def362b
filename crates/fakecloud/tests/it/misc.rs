//! Certificates, the shifted Date header and token-endpoint faults.

use std::time::{Duration, Instant, SystemTime};

use fakecloud::{CertMode, FakeCloud, HttpFault, Options};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::support::*;

/// Subject CN of the leaf the HTTPS port presents.
async fn leaf_cn(cloud: &FakeCloud) -> String {
    let tcp = TcpStream::connect(("127.0.0.1", cloud.https_port()))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls_client_config(&cloud.ca_pem()))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn cert_modes() {
    let trusted = FakeCloud::start(Options::default()).await.unwrap();
    assert!(trusted.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(leaf_cn(&trusted).await, "localhost");

    let mismatch = FakeCloud::start(Options {
        cert: CertMode::CnMismatch,
        ..Options::default()
    })
    .await
    .unwrap();
    // The chain and SAN still verify; only the CN is off.
    assert_eq!(leaf_cn(&mismatch).await, "other.example");

    let untrusted = FakeCloud::start(Options {
        cert: CertMode::Untrusted,
        ..Options::default()
    })
    .await
    .unwrap();
    let err = http(&untrusted)
        .get(format!(
            "{}/.well-known/openid-configuration",
            untrusted.base_url()
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[tokio::test]
async fn date_header_is_shifted() {
    let cloud = FakeCloud::start(Options {
        date_offset_secs: -3600,
        ..Options::default()
    })
    .await
    .unwrap();
    let resp = http(&cloud)
        .get(format!(
            "{}/.well-known/openid-configuration",
            cloud.base_url()
        ))
        .send()
        .await
        .unwrap();
    let date = httpdate::parse_http_date(resp.headers()["date"].to_str().unwrap()).unwrap();
    let skew = SystemTime::now().duration_since(date).unwrap();
    assert!(
        skew > Duration::from_secs(3590) && skew < Duration::from_secs(3610),
        "{skew:?}"
    );
    let disc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(disc["token_endpoint"], cloud.google_token_url());
    assert_eq!(disc["revocation_endpoint"], cloud.google_revoke_url());
}

#[tokio::test]
async fn token_endpoint_faults() {
    let cloud = FakeCloud::start(Options::default()).await.unwrap();
    let c = http(&cloud);
    let ms_token = format!("{}/token", cloud.entra_endpoint("common"));
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "ms-client-id"),
        ("refresh_token", "x"),
    ];

    cloud.set_token_endpoint_fault(HttpFault::Status(503));
    let resp = c.post(&ms_token).form(&form).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let resp = c
        .post(cloud.google_token_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    // Only the token endpoints are affected.
    let dc = devicecode(&c, &cloud, SMTP_SCOPE).await;
    assert!(dc["device_code"].is_string());

    cloud.set_token_endpoint_fault(HttpFault::Down);
    let err = c.post(&ms_token).form(&form).send().await.unwrap_err();
    assert!(!err.is_status(), "{err:?}");

    cloud.set_token_endpoint_fault(HttpFault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let resp = c.post(&ms_token).form(&form).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status().as_u16(), 400);

    cloud.set_token_endpoint_fault(HttpFault::None);
    let resp = c.post(&ms_token).form(&form).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}
