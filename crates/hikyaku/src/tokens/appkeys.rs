//! App-only credential material (protocols.md §8, §9): reading a
//! certificate with its private key (PEM, or PKCS#12 with a password), a
//! Google service account's JSON key, and signing the JWTs both grants send.
//!
//! Crypto is aws-lc-rs (already the TLS provider, so no second RSA stack):
//! PS256 for Microsoft's client assertion (its recommendation), RS256 for
//! Google (the only algorithm it accepts). PKCS#12 is read with p12-keystore.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::Digest as _;

/// Why uploaded credential material cannot be used. Each text says what to
/// do; the Remote UI shows its translation ([`CredentialError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "the file is neither PEM (certificate and private key) nor PKCS#12 (.pfx/.p12): export the certificate with its private key"
    )]
    NotCertificate,
    #[error("the PKCS#12 file cannot be opened: the password is wrong, or the file is damaged")]
    Pkcs12,
    #[error(
        "no certificate was found in the file: it must hold the certificate and its private key"
    )]
    NoCertificate,
    #[error(
        "no private key was found in the file: export the certificate with its private key (PFX with the key, or PEM with a PRIVATE KEY block)"
    )]
    NoPrivateKey,
    #[error(
        "the private key is encrypted: upload a PKCS#12 (.pfx) file with its password, or an unencrypted PEM key"
    )]
    EncryptedPem,
    #[error(
        "the private key is not an RSA key of 2048 bits or more: Microsoft's client assertions and Google's service accounts need RSA"
    )]
    NotRsa,
    #[error("the private key does not belong to the certificate: upload the matching pair")]
    KeyMismatch,
    #[error("the certificate cannot be read: upload an X.509 certificate")]
    BadCertificate,
    #[error(
        "the service account key is not JSON: in Google Cloud → IAM & Admin → Service accounts → (the account) → Keys, add a key of type JSON and upload that file"
    )]
    NotJson,
    #[error(
        "the key file is not a service account key (\"type\" must be \"service_account\"): download a JSON key of the service account"
    )]
    NotServiceAccount,
    #[error("the key file lacks \"{0}\": download a new JSON key of the service account")]
    MissingField(&'static str),
    #[error("the key file's token_uri must be an https:// address")]
    BadTokenUri,
    #[error("a JWT could not be signed with this key")]
    Sign,
}

impl CredentialError {
    /// The Fluent message id of the text.
    pub fn code(&self) -> &'static str {
        match self {
            CredentialError::NotCertificate => "app-err-not-certificate",
            CredentialError::Pkcs12 => "app-err-pkcs12",
            CredentialError::NoCertificate => "app-err-no-certificate",
            CredentialError::NoPrivateKey => "app-err-no-private-key",
            CredentialError::EncryptedPem => "app-err-encrypted-pem",
            CredentialError::NotRsa => "app-err-not-rsa",
            CredentialError::KeyMismatch => "app-err-key-mismatch",
            CredentialError::BadCertificate => "app-err-bad-certificate",
            CredentialError::NotJson => "app-err-not-json",
            CredentialError::NotServiceAccount => "app-err-not-service-account",
            CredentialError::MissingField(_) => "app-err-missing-field",
            CredentialError::BadTokenUri => "app-err-token-uri",
            CredentialError::Sign => "app-err-sign",
        }
    }
}

/// A certificate and its RSA private key, checked to belong together.
#[derive(Clone)]
pub struct CertificateBundle {
    /// The certificate (public), DER.
    pub certificate_der: Vec<u8>,
    /// The private key, PKCS#8 DER: sealed before it is stored.
    pub private_key_pkcs8: Vec<u8>,
    /// The certificate's notAfter, Unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for CertificateBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateBundle")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The RSA key pair of PKCS#8 (or PKCS#1) DER.
fn rsa_key(der: &[u8]) -> Result<RsaKeyPair, CredentialError> {
    let key = RsaKeyPair::from_pkcs8(der)
        .or_else(|_| RsaKeyPair::from_der(der))
        .map_err(|_| CredentialError::NotRsa)?;
    if key.public_modulus_len() < 256 {
        return Err(CredentialError::NotRsa);
    }
    Ok(key)
}

/// The RSA public key (RFC 8017 DER) and notAfter of a certificate.
fn certificate_facts(der: &[u8]) -> Result<(Vec<u8>, i64), CredentialError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| CredentialError::BadCertificate)?;
    Ok((
        cert.public_key().subject_public_key.data.to_vec(),
        cert.validity().not_after.timestamp(),
    ))
}

/// Reads a certificate with its private key from PEM text (certificate and
/// `PRIVATE KEY` blocks in one file, or two files concatenated) or from a
/// PKCS#12 file opened with `password`. Among several certificates the one
/// whose public key matches the private key is taken.
pub fn read_certificate(
    file: &[u8],
    password: Option<&str>,
) -> Result<CertificateBundle, CredentialError> {
    let (certs, key) = if file.windows(11).any(|w| w == b"-----BEGIN ") {
        if file
            .windows(29)
            .any(|w| w == b"BEGIN ENCRYPTED PRIVATE KEY--")
        {
            return Err(CredentialError::EncryptedPem);
        }
        let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(file)
            .filter_map(Result::ok)
            .map(|c| c.as_ref().to_vec())
            .collect();
        let key = match PrivateKeyDer::from_pem_slice(file) {
            Ok(PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
            Ok(PrivateKeyDer::Pkcs1(k)) => k.secret_pkcs1_der().to_vec(),
            Ok(_) => return Err(CredentialError::NotRsa),
            Err(_) => return Err(CredentialError::NoPrivateKey),
        };
        (certs, key)
    } else {
        let store = p12_keystore::KeyStore::from_pkcs12(
            file,
            password.unwrap_or(""),
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|_| {
            if looks_like_der_sequence(file) {
                CredentialError::Pkcs12
            } else {
                CredentialError::NotCertificate
            }
        })?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or(CredentialError::NoPrivateKey)?;
        let certs = chain.certs().iter().map(|c| c.as_der().to_vec()).collect();
        (certs, chain.key().as_der().to_vec())
    };
    if certs.is_empty() {
        return Err(CredentialError::NoCertificate);
    }
    let pair = rsa_key(&key)?;
    let public = pair.public_key().as_ref().to_vec();
    let mut first_error = CredentialError::KeyMismatch;
    for cert in certs {
        match certificate_facts(&cert) {
            Ok((cert_public, not_after)) if cert_public == public => {
                let pkcs8 = pair
                    .as_der()
                    .map_err(|_| CredentialError::NotRsa)?
                    .as_ref()
                    .to_vec();
                return Ok(CertificateBundle {
                    certificate_der: cert,
                    private_key_pkcs8: pkcs8,
                    not_after,
                });
            }
            Ok(_) => {}
            Err(e) => first_error = e,
        }
    }
    Err(first_error)
}

/// A PKCS#12 file is a DER SEQUENCE; anything else is not one at all.
fn looks_like_der_sequence(file: &[u8]) -> bool {
    file.first() == Some(&0x30)
}

/// `x5t#S256` of a certificate: base64url SHA-256 of its DER.
pub fn thumbprint_s256(certificate_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(certificate_der))
}

/// The certificate's notAfter, Unix seconds.
pub fn certificate_not_after(certificate_der: &[u8]) -> Result<i64, CredentialError> {
    certificate_facts(certificate_der).map(|(_, t)| t)
}

/// A service account key file, as Google issues it.
#[derive(Clone)]
pub struct ServiceAccountKey {
    pub client_email: String,
    /// The numeric client ID the Admin console's delegation needs.
    pub client_id: Option<String>,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    private_key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("client_id", &self.client_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    client_id: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// Reads and checks a service account JSON key: `type`, `client_email`,
/// `private_key` (an RSA PKCS#8 PEM) and an https `token_uri`.
pub fn read_service_account(json: &[u8]) -> Result<ServiceAccountKey, CredentialError> {
    let file: KeyFile = serde_json::from_slice(json).map_err(|_| CredentialError::NotJson)?;
    if file.kind.as_deref() != Some("service_account") {
        return Err(CredentialError::NotServiceAccount);
    }
    let nonempty = |v: Option<String>, name| {
        v.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or(CredentialError::MissingField(name))
    };
    let client_email = nonempty(file.client_email, "client_email")?;
    let pem = nonempty(file.private_key, "private_key")?;
    let token_uri = nonempty(file.token_uri, "token_uri")?;
    match url::Url::parse(&token_uri) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
        _ => return Err(CredentialError::BadTokenUri),
    }
    let key = match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
        Ok(PrivateKeyDer::Pkcs1(k)) => k.secret_pkcs1_der().to_vec(),
        Ok(_) => return Err(CredentialError::NotRsa),
        Err(_) => return Err(CredentialError::MissingField("private_key")),
    };
    rsa_key(&key)?;
    Ok(ServiceAccountKey {
        client_email,
        client_id: file.client_id.filter(|s| !s.trim().is_empty()),
        private_key_id: file.private_key_id.filter(|s| !s.trim().is_empty()),
        token_uri,
        private_key_pkcs8: key,
    })
}

/// How a JWT is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PSS with SHA-256 (Microsoft's recommendation).
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Google).
    Rs256,
}

/// Signs `header.claims` with an RSA key (PKCS#8 or PKCS#1 DER).
pub fn sign_jwt(
    alg: Alg,
    mut header: serde_json::Value,
    claims: &serde_json::Value,
    key_der: &[u8],
) -> Result<String, CredentialError> {
    let pair = rsa_key(key_der)?;
    header["alg"] = serde_json::json!(match alg {
        Alg::Ps256 => "PS256",
        Alg::Rs256 => "RS256",
    });
    header["typ"] = serde_json::json!("JWT");
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; pair.public_modulus_len()];
    let encoding: &'static dyn signature::RsaEncoding = match alg {
        Alg::Ps256 => &signature::RSA_PSS_SHA256,
        Alg::Rs256 => &signature::RSA_PKCS1_SHA256,
    };
    pair.sign(encoding, &SystemRandom::new(), input.as_bytes(), &mut sig)
        .map_err(|_| CredentialError::Sign)?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// Microsoft's client assertion (protocols.md §8): PS256, `x5t#S256`,
/// `aud` = the token URL, `iss` = `sub` = client id, a new `jti`, valid
/// from now for 10 minutes.
pub fn client_assertion(
    token_url: &str,
    client_id: &str,
    certificate_der: &[u8],
    key_pkcs8: &[u8],
    now: i64,
) -> Result<String, CredentialError> {
    let header = serde_json::json!({ "x5t#S256": thumbprint_s256(certificate_der) });
    let claims = serde_json::json!({
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    });
    sign_jwt(Alg::Ps256, header, &claims, key_pkcs8)
}

impl ServiceAccountKey {
    /// Google's JWT bearer assertion (protocols.md §9): RS256, `iss` =
    /// client_email, `sub` = the mailbox, `aud` = token_uri, one hour.
    pub fn assertion(
        &self,
        mailbox: &str,
        scope: &str,
        now: i64,
    ) -> Result<String, CredentialError> {
        let mut header = serde_json::json!({});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::json!(kid);
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": mailbox,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        sign_jwt(Alg::Rs256, header, &claims, &self.private_key_pkcs8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_pkcs8() -> Vec<u8> {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        pair.as_der().unwrap().as_ref().to_vec()
    }

    fn cert_for(pkcs8: &[u8]) -> (String, String) {
        let key = rcgen::KeyPair::try_from(pkcs8).unwrap();
        let params = rcgen::CertificateParams::new(vec!["hikyaku-test".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pem_pair_is_read_and_a_foreign_key_refused() {
        let k1 = rsa_pkcs8();
        let (cert, key) = cert_for(&k1);
        let b = read_certificate(format!("{cert}\n{key}").as_bytes(), None).unwrap();
        assert_eq!(
            certificate_not_after(&b.certificate_der).unwrap(),
            b.not_after
        );
        let k2 = rsa_pkcs8();
        let (_, other_key) = cert_for(&k2);
        assert_eq!(
            read_certificate(format!("{cert}\n{other_key}").as_bytes(), None).unwrap_err(),
            CredentialError::KeyMismatch
        );
        assert_eq!(
            read_certificate(cert.as_bytes(), None).unwrap_err(),
            CredentialError::NoPrivateKey
        );
        assert_eq!(
            read_certificate(b"hello", None).unwrap_err(),
            CredentialError::NotCertificate
        );
    }

    #[test]
    fn a_pkcs12_file_needs_its_password() {
        let k = rsa_pkcs8();
        let (cert_pem, _) = cert_for(&k);
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let mut store = p12_keystore::KeyStore::new();
        let chain = p12_keystore::PrivateKeyChain::new(
            vec![1u8; 20],
            p12_keystore::PrivateKey::from_der(&k).unwrap(),
            [p12_keystore::Certificate::from_der(cert_der.as_ref()).unwrap()],
        );
        store.add_entry("app", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
        let pfx = store.writer("s3cret").write().unwrap();
        let b = read_certificate(&pfx, Some("s3cret")).unwrap();
        assert_eq!(b.certificate_der, cert_der.as_ref());
        assert_eq!(
            read_certificate(&pfx, Some("wrong")).unwrap_err(),
            CredentialError::Pkcs12
        );
    }

    #[test]
    fn jwts_verify_with_the_public_key() {
        let k = rsa_pkcs8();
        let pair = RsaKeyPair::from_pkcs8(&k).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        for (alg, params) in [
            (Alg::Ps256, &signature::RSA_PSS_2048_8192_SHA256),
            (Alg::Rs256, &signature::RSA_PKCS1_2048_8192_SHA256),
        ] {
            let jwt =
                sign_jwt(alg, serde_json::json!({}), &serde_json::json!({"a": 1}), &k).unwrap();
            let (input, sig) = jwt.rsplit_once('.').unwrap();
            signature::UnparsedPublicKey::new(params, &public)
                .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
                .unwrap();
        }
    }

    #[test]
    fn service_account_keys_are_checked() {
        let k = rsa_pkcs8();
        let (_, key_pem) = cert_for(&k);
        let good = serde_json::json!({
            "type": "service_account", "client_email": "relay@p.iam.gserviceaccount.com",
            "private_key": key_pem, "token_uri": "https://oauth2.googleapis.com/token",
            "client_id": "1234567890"
        });
        let sa = read_service_account(good.to_string().as_bytes()).unwrap();
        assert_eq!(sa.client_id.as_deref(), Some("1234567890"));
        let jwt = sa
            .assertion("scan@example.com", "https://mail.google.com/", 1000)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "scan@example.com");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600
        );
        let mut bad = good.clone();
        bad["type"] = "authorized_user".into();
        assert_eq!(
            read_service_account(bad.to_string().as_bytes()).unwrap_err(),
            CredentialError::NotServiceAccount
        );
        let mut bad = good.clone();
        bad["token_uri"] = "http://x/token".into();
        assert_eq!(
            read_service_account(bad.to_string().as_bytes()).unwrap_err(),
            CredentialError::BadTokenUri
        );
        let mut bad = good;
        bad.as_object_mut().unwrap().remove("client_email");
        assert_eq!(
            read_service_account(bad.to_string().as_bytes()).unwrap_err(),
            CredentialError::MissingField("client_email")
        );
        assert_eq!(
            read_service_account(b"not json").unwrap_err(),
            CredentialError::NotJson
        );
    }
}
