//! TLS: the one place that builds rustls configurations.
//!
//! Outbound (HTTPS to the providers, SMTP upstream) the Remote UI's two settings
//! map onto a [`TlsPolicy`]:
//!
//! * **Verify Server Certificate** on (default): WebPKI chain, validity and
//!   subjectAltName host checks. Trust = the platform store (via
//!   `rustls-platform-verifier`, which on Linux reads the OpenSSL locations such as
//!   `/etc/ssl/certs`, so a TLS-inspecting proxy's CA installed in the OS is
//!   honoured) plus the administrator's CA certificates. When the platform store
//!   is empty (a minimal container without `ca-certificates`) we fall back to the
//!   bundled Mozilla list from `webpki-roots` and log a warning, rather than
//!   failing every connection.
//! * **Add CN to Verification Items**: after the standard verifier succeeds, the
//!   end-entity certificate's subject Common Name must also equal the host name
//!   (see [`check_cn`]). rustls never looks at the CN, so this is our own extra
//!   check, wrapped around the standard verifier.
//! * Verify off: any certificate is accepted (still encrypted, and handshake
//!   signatures are still checked so the peer must hold the certificate's key),
//!   but the server's identity is not authenticated.
//!
//! Inbound, [`server_config`] builds the listener configuration from PEM, and
//! [`generate_self_signed`] makes a certificate for the Remote UI when the
//! administrator supplied none. [`parse_ca_pem`] validates CA certificates the
//! administrator pastes into the "CA Certificates" page.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The administrator's extra CA certificates (trust anchors beside the
/// public roots), shared by every outbound TLS client and replaced in place
/// when CA Certificates changes.
pub type ExtraCas = Arc<std::sync::RwLock<Vec<CertificateDer<'static>>>>;

/// A trust set holding `ders`.
pub fn extra_cas(ders: impl IntoIterator<Item = Vec<u8>>) -> ExtraCas {
    Arc::new(std::sync::RwLock::new(
        ders.into_iter().map(CertificateDer::from).collect(),
    ))
}

/// Replaces what `cas` holds with `ders`.
pub fn replace_extra_cas(cas: &ExtraCas, ders: impl IntoIterator<Item = Vec<u8>>) {
    let fresh: Vec<CertificateDer<'static>> = ders.into_iter().map(CertificateDer::from).collect();
    // A poisoned lock only means a reader panicked; the set is still whole.
    let mut set = cas
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *set = fresh;
}
use time::format_description::well_known::Rfc3339;

use crate::i18n::Reason;

/// How outbound TLS connections authenticate the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPolicy {
    /// "Verify Server Certificate".
    pub verify: bool,
    /// "Add CN to Verification Items" (only meaningful when `verify` is on).
    pub verify_cn: bool,
    /// CA certificates the administrator added, trusted in addition to the
    /// platform roots.
    pub extra_cas: Vec<CertificateDer<'static>>,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self {
            verify: true,
            verify_cn: false,
            extra_cas: Vec::new(),
        }
    }
}

/// Everything that can go wrong building TLS configurations or checking
/// certificates. Messages say what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The Add-CN check failed.
    #[error("{}", self.reason())]
    CnMismatch { cn: String, host: String },

    /// The Add-CN check found no CN at all.
    #[error("{}", self.reason())]
    NoCommonName { host: String },

    /// A peer certificate could not be parsed.
    #[error("the server certificate could not be parsed ({reason})")]
    BadCertificate { reason: String },

    /// The trusted root store could not be built.
    #[error(
        "could not load the trusted root certificates ({reason}) — install the system CA bundle \
         (e.g. the ca-certificates package) or add the issuing CA under CA Certificates"
    )]
    TrustStore { reason: String },

    /// A configured extra CA could not be used as a trust anchor.
    #[error(
        "CA certificate #{index} in the configuration cannot be used ({reason}) — remove or replace it under CA Certificates"
    )]
    ExtraCa { index: usize, reason: String },

    /// No certificate block was found in PEM text.
    #[error(
        "no certificate found in the PEM text — paste one or more blocks starting with -----BEGIN CERTIFICATE-----"
    )]
    NoCertificates,

    /// A PEM block is malformed.
    #[error(
        "certificate #{index}: the PEM text is malformed ({reason}) — paste the whole block including the BEGIN and END lines"
    )]
    Pem { index: usize, reason: String },

    /// A PEM block decoded but is not a valid X.509 certificate.
    #[error("certificate #{index} is not a valid X.509 certificate ({reason})")]
    Malformed { index: usize, reason: String },

    /// A certificate offered as a CA is not one.
    #[error(
        "certificate #{index} ({subject}) is not a CA certificate (basicConstraints CA is not set) — \
         import the certificate of the issuing CA, not the server's own certificate"
    )]
    NotCa { index: usize, subject: String },

    /// A CA certificate has expired.
    #[error(
        "certificate #{index} ({subject}) expired on {not_after} — obtain the CA's current certificate \
         (or check this device's date and time if that date is wrong)"
    )]
    Expired {
        index: usize,
        subject: String,
        not_after: String,
    },

    /// A CA certificate is not valid yet.
    #[error(
        "certificate #{index} ({subject}) is not valid before {not_before} — check this device's date and time"
    )]
    NotYetValid {
        index: usize,
        subject: String,
        not_before: String,
    },

    /// The private key PEM is unusable.
    #[error(
        "the private key could not be read ({reason}) — paste an unencrypted PEM key \
         (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    PrivateKey { reason: String },

    /// rustls refused the configuration (for example key and certificate do not match).
    #[error(
        "the TLS configuration was refused ({reason}) — check that the private key belongs to the first certificate"
    )]
    Config { reason: String },

    /// Self-signed certificate generation failed.
    #[error("could not generate a self-signed certificate ({reason})")]
    Generate { reason: String },

    /// Self-signed certificate requested without any host name.
    #[error(
        "no host name given for the self-signed certificate — set the device's host name or IP address"
    )]
    NoHosts,

    /// The HTTP client could not be built (the cause is in the message, not
    /// chained, so that it is said once).
    #[error("could not build the HTTP client ({0})")]
    HttpClient(reqwest::Error),
}

impl TlsError {
    /// The error as a reason that the status pages show in their language.
    pub fn reason(&self) -> Reason {
        match self {
            TlsError::CnMismatch { cn, host } => Reason::new("tls-cn-mismatch")
                .arg("cn", cn)
                .arg("host", host),
            TlsError::NoCommonName { host } => Reason::new("tls-no-cn").arg("host", host),
            other => Reason::text(other),
        }
    }
}

/// Install aws-lc-rs as the process-wide rustls crypto provider.
///
/// Our own configs name the provider explicitly, but libraries that build their
/// own configs (lettre, sqlx) use the process default, and rustls panics at the
/// first handshake if two providers are compiled in and none was installed.
/// Idempotent: a second call (or a provider installed elsewhere) is fine.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client configuration for `policy` (built once, then shared).
pub fn client_config(policy: &TlsPolicy) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_with_id(policy).map(|(_, config)| config)
}

/// The client configuration for `policy` and the id of that build, so whoever
/// keeps connections open can tell which policy they were opened under.
pub fn client_config_with_id(
    policy: &TlsPolicy,
) -> Result<(u64, Arc<rustls::ClientConfig>), TlsError> {
    static BUILT: std::sync::LazyLock<ClientConfigs> =
        std::sync::LazyLock::new(ClientConfigs::default);
    BUILT.get(policy)
}

fn build_client_config(policy: &TlsPolicy) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = if policy.verify {
        let standard = standard_verifier(provider.clone(), &policy.extra_cas)?;
        if policy.verify_cn {
            Arc::new(CnCheckingVerifier { inner: standard })
        } else {
            standard
        }
    } else {
        // verify_cn is ignored here: without chain verification a CN proves nothing.
        Arc::new(AcceptAnyCertificate {
            provider: provider.clone(),
        })
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Client configurations built once per policy, for every outbound TLS
/// connection (HTTPS and SMTP): building one loads the platform's root
/// store, far too slow to do per connection or per request. (Roots the OS
/// gains later are seen after a restart; the administrator's CAs are part of
/// the policy and apply at once.)
#[derive(Default)]
struct ClientConfigs {
    built: std::sync::Mutex<Vec<(TlsPolicy, u64, Arc<rustls::ClientConfig>)>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Policies remembered at once (accounts rarely differ; CA lists change rarely).
const CACHED_POLICIES: usize = 8;

impl ClientConfigs {
    /// The configuration for `policy` and its id.
    fn get(&self, policy: &TlsPolicy) -> Result<(u64, Arc<rustls::ClientConfig>), TlsError> {
        if let Ok(built) = self.built.lock()
            && let Some((_, id, c)) = built.iter().find(|(p, _, _)| p == policy)
        {
            return Ok((*id, c.clone()));
        }
        let config = build_client_config(policy)?;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut built) = self.built.lock() {
            if built.len() >= CACHED_POLICIES {
                built.remove(0);
            }
            built.push((policy.clone(), id, config.clone()));
        }
        Ok((id, config))
    }
}

/// Platform roots + extra CAs, or bundled roots + extra CAs when the platform
/// store is empty.
fn standard_verifier(
    provider: Arc<CryptoProvider>,
    extra_cas: &[CertificateDer<'static>],
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    // Check the extra CAs ourselves first so a bad one is reported by position
    // instead of as an anonymous rustls error.
    for (i, ca) in extra_cas.iter().enumerate() {
        let mut probe = rustls::RootCertStore::empty();
        probe.add(ca.clone()).map_err(|e| TlsError::ExtraCa {
            index: i + 1,
            reason: e.to_string(),
        })?;
    }

    // Probe the platform store without extras first: with extras given, the
    // platform verifier silently accepts an empty system store, which would leave
    // us trusting only the administrator's CAs and failing against the public
    // providers with a confusing "unknown issuer".
    match rustls_platform_verifier::Verifier::new(provider.clone()) {
        Ok(platform) if extra_cas.is_empty() => Ok(Arc::new(platform)),
        Ok(_) => {
            let v = rustls_platform_verifier::Verifier::new_with_extra_roots(
                extra_cas.iter().cloned(),
                provider,
            )
            .map_err(|e| TlsError::TrustStore {
                reason: e.to_string(),
            })?;
            Ok(Arc::new(v))
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no usable system CA certificates; falling back to the bundled Mozilla root list (webpki-roots)"
            );
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            for ca in extra_cas {
                roots.add(ca.clone()).map_err(|e| TlsError::TrustStore {
                    reason: e.to_string(),
                })?;
            }
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::TrustStore {
                    reason: e.to_string(),
                })?;
            Ok(v)
        }
    }
}

/// Standard verification, then the Add-CN check.
#[derive(Debug)]
struct CnCheckingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
}

fn server_name_string(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        // ServerName is non_exhaustive; anything new is compared by its debug form,
        // which cannot match a CN and so fails closed.
        other => format!("{other:?}"),
    }
}

/// Wrap one of our errors so it travels through rustls (and reqwest / io::Error)
/// and can be recognised again by [`describe_tls_error`].
fn to_rustls(err: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

impl ServerCertVerifier for CnCheckingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        check_cn(end_entity.as_ref(), &server_name_string(server_name)).map_err(to_rustls)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// "Verify Server Certificate" off: accept any certificate, but still check the
/// handshake signatures, so the peer must at least own the key of the
/// certificate it presented (the session stays encrypted to that key).
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Normalise a host name for comparison: lower case, no trailing dot, no IPv6
/// brackets.
fn normalise_host(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// Does a certificate CN match `host`? Case-insensitive; a `*` is a wildcard only
/// when it is the whole leftmost label, and then it matches exactly one
/// non-empty label and needs at least two labels after it (`*.com` matches
/// nothing). Wildcards never match IP addresses.
fn cn_matches(cn: &str, host: &str) -> bool {
    let cn = normalise_host(cn);
    let host = normalise_host(host);
    if cn.is_empty() || host.is_empty() {
        return false;
    }
    if let Ok(host_ip) = host.parse::<IpAddr>() {
        // Compare parsed addresses so "::1" matches "0:0::1".
        return cn.parse::<IpAddr>().is_ok_and(|cn_ip| cn_ip == host_ip);
    }
    if let Some(suffix) = cn.strip_prefix("*.") {
        if !suffix.contains('.') || suffix.contains('*') {
            return false;
        }
        return match host.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest == suffix,
            None => false,
        };
    }
    cn == host
}

/// The Add-CN check: the subject Common Name of the end-entity certificate
/// `leaf_der` must match `host` (see the module docs for the wildcard rules).
/// If the certificate carries several CNs, any matching one passes.
///
/// Used by the HTTPS verifier and by the SMTP client, which checks the peer
/// certificate after STARTTLS and before AUTH because lettre cannot take a
/// custom verifier.
pub fn check_cn(leaf_der: &[u8], host: &str) -> Result<(), TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf_der).map_err(|e| TlsError::BadCertificate {
            reason: e.to_string(),
        })?;
    let mut first_cn: Option<String> = None;
    for attr in cert.subject().iter_common_name() {
        // A CN that is not a string type cannot name a host; skip it.
        let Ok(cn) = attr.as_str() else { continue };
        if cn_matches(cn, host) {
            return Ok(());
        }
        first_cn.get_or_insert_with(|| cn.to_owned());
    }
    match first_cn {
        Some(cn) => Err(TlsError::CnMismatch {
            cn,
            host: host.to_owned(),
        }),
        None => Err(TlsError::NoCommonName {
            host: host.to_owned(),
        }),
    }
}

fn format_unix(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{secs} (Unix time)"))
}

/// A reason for a TLS failure, for the status pages and logs.
pub fn tls_reason(err: &rustls::Error) -> Reason {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(ce) => certificate_reason(ce),
        E::NoCertificatesPresented => Reason::new("tls-no-certificate"),
        E::AlertReceived(alert) => Reason::new("tls-alert").arg("alert", format!("{alert:?}")),
        E::PeerIncompatible(p) => Reason::new("tls-incompatible").arg("detail", format!("{p:?}")),
        E::InvalidMessage(_) => Reason::new("tls-not-tls"),
        E::PeerMisbehaved(p) => Reason::new("tls-misbehaved").arg("detail", format!("{p:?}")),
        E::General(msg) => Reason::new("tls-error").arg("detail", msg),
        other => Reason::new("tls-error").arg("detail", other),
    }
}

/// The English of [`tls_reason`].
pub fn describe_tls_error(err: &rustls::Error) -> String {
    tls_reason(err).to_string()
}

fn certificate_reason(ce: &CertificateError) -> Reason {
    use CertificateError as C;
    match ce {
        C::UnknownIssuer => Reason::new("tls-unknown-issuer"),
        C::Expired => Reason::new("tls-expired"),
        C::ExpiredContext { time, not_after } => Reason::new("tls-expired-at")
            .arg("not_after", format_unix(not_after.as_secs()))
            .arg("now", format_unix(time.as_secs())),
        C::NotValidYet => Reason::new("tls-not-yet-valid"),
        C::NotValidYetContext { time, not_before } => Reason::new("tls-not-yet-valid-at")
            .arg("not_before", format_unix(not_before.as_secs()))
            .arg("now", format_unix(time.as_secs())),
        C::NotValidForName => Reason::new("tls-wrong-name-bare"),
        C::NotValidForNameContext {
            expected,
            presented,
        } => Reason::new("tls-wrong-name")
            .arg("host", server_name_string(expected))
            .arg(
                "names",
                if presented.is_empty() {
                    "nothing".to_owned()
                } else {
                    presented
                        .iter()
                        .map(|p| unquote_presented(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
        C::Revoked => Reason::new("tls-revoked"),
        C::BadSignature => Reason::new("tls-bad-signature"),
        C::BadEncoding => Reason::new("tls-malformed"),
        C::UnhandledCriticalExtension => Reason::new("tls-critical-extension"),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => Reason::new("tls-purpose"),
        C::Other(other) => match other.0.downcast_ref::<TlsError>() {
            Some(ours) => ours.reason(),
            None => Reason::new("tls-rejected").arg("detail", &other.0),
        },
        other => Reason::new("tls-rejected").arg("detail", other),
    }
}

/// webpki reports presented names in debug form (`DnsName("a.example")`);
/// show just the name.
fn unquote_presented(p: &str) -> &str {
    match (p.find('"'), p.rfind('"')) {
        (Some(a), Some(b)) if b > a => &p[a + 1..b],
        _ => p,
    }
}

/// A CA certificate the administrator added, with what the UI shows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER, `AA:BB:…`.
    pub sha256_fingerprint: String,
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Parse one or several CA certificates from PEM and refuse anything that would
/// not work as a trust anchor: malformed PEM, non-CA certificates (basicConstraints
/// CA=false, or absent on a certificate that is not self-issued), expired or
/// not-yet-valid certificates. Errors name the certificate by position (1-based)
/// and subject.
pub fn parse_ca_pem(pem: &str, now: OffsetDateTime) -> Result<Vec<CaCertificate>, TlsError> {
    let mut out = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let index = i + 1;
        let der = item.map_err(|e| TlsError::Pem {
            index,
            reason: e.to_string(),
        })?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| TlsError::Malformed {
                index,
                reason: e.to_string(),
            })?;
        let subject = cert.subject().to_string();
        let issuer = cert.issuer().to_string();
        let ca = match cert.basic_constraints() {
            Ok(Some(bc)) => bc.value.ca,
            // Old self-signed roots (v1 certificates) carry no extensions at all.
            Ok(None) => cert.subject().as_raw() == cert.issuer().as_raw(),
            Err(e) => {
                return Err(TlsError::Malformed {
                    index,
                    reason: e.to_string(),
                });
            }
        };
        if !ca {
            return Err(TlsError::NotCa { index, subject });
        }
        let validity = cert.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        if not_after < now {
            return Err(TlsError::Expired {
                index,
                subject,
                not_after: format_time(not_after),
            });
        }
        if not_before > now {
            return Err(TlsError::NotYetValid {
                index,
                subject,
                not_before: format_time(not_before),
            });
        }
        // Last, make sure rustls/webpki accept it as a trust anchor.
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| TlsError::Malformed {
                index,
                reason: e.to_string(),
            })?;
        out.push(CaCertificate {
            sha256_fingerprint: fingerprint(&der),
            der: der.to_vec(),
            subject,
            issuer,
            not_before,
            not_after,
        });
    }
    if out.is_empty() {
        return Err(TlsError::NoCertificates);
    }
    Ok(out)
}

/// Build a server configuration from a PEM certificate chain (leaf first) and
/// its PEM private key.
pub fn server_config(
    cert_chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut chain = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes()).enumerate() {
        chain.push(item.map_err(|e| TlsError::Pem {
            index: i + 1,
            reason: e.to_string(),
        })?);
    }
    if chain.is_empty() {
        return Err(TlsError::NoCertificates);
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::PrivateKey {
            reason: e.to_string(),
        })?;
    build_server_config(chain, key).map_err(|reason| TlsError::Config { reason })
}

/// A certificate chain and its private key named by configuration keys
/// (`web.tls_cert`/`web.tls_key`, `intake.tls_cert`/`intake.tls_key`).
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    pub cert_key: &'static str,
    pub cert: &'a str,
    pub key_key: &'static str,
    pub key: &'a str,
}

/// Why a configured certificate or key file is unusable. Every message names
/// the configuration key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    // The I/O error is part of the message, not a chained source: it is said once.
    #[error("{key} = {path:?}: cannot read the file: {error}")]
    Read {
        key: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("{key} = {path:?}: {reason}")]
    Content {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("{cert_key} = {cert:?} with {key_key} = {key:?}: {reason}")]
    Pair {
        cert_key: &'static str,
        cert: String,
        key_key: &'static str,
        key: String,
        reason: String,
    },
}

impl TlsFiles<'_> {
    /// Reads both files and builds the listener configuration.
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, TlsFileError> {
        self.load_reloadable().map(|(config, _)| config)
    }

    /// [`TlsFiles::load`], with the handle that [`TlsFiles::reload_into`]
    /// swaps the certificate through while the listeners run.
    pub fn load_reloadable(
        &self,
    ) -> Result<(Arc<rustls::ServerConfig>, Arc<ReloadableCert>), TlsFileError> {
        let cert = Arc::new(ReloadableCert(std::sync::RwLock::new(
            self.certified_key()?,
        )));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.refused(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        Ok((Arc::new(config), cert))
    }

    /// Reads both files again and, only if they are usable, makes new
    /// handshakes use them; on an error the current certificate stays.
    pub fn reload_into(&self, cert: &ReloadableCert) -> Result<(), TlsFileError> {
        let key = self.certified_key()?;
        if let Ok(mut current) = cert.0.write() {
            *current = key;
        }
        Ok(())
    }

    fn refused(&self, reason: String) -> TlsFileError {
        TlsFileError::Pair {
            cert_key: self.cert_key,
            cert: self.cert.to_owned(),
            key_key: self.key_key,
            key: self.key.to_owned(),
            reason: format!(
                "the TLS configuration was refused ({reason}): check that the key belongs to the first certificate"
            ),
        }
    }

    fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsFileError> {
        let read = |key: &'static str, path: &str| {
            std::fs::read(path).map_err(|error| TlsFileError::Read {
                key,
                path: path.to_owned(),
                error,
            })
        };
        let content = |key: &'static str, path: &str, reason: String| TlsFileError::Content {
            key,
            path: path.to_owned(),
            reason,
        };
        let cert_pem = read(self.cert_key, self.cert)?;
        let mut chain = Vec::new();
        for (i, item) in CertificateDer::pem_slice_iter(&cert_pem).enumerate() {
            chain.push(item.map_err(|e| {
                content(
                    self.cert_key,
                    self.cert,
                    format!("certificate #{} is not valid PEM ({e})", i + 1),
                )
            })?);
        }
        if chain.is_empty() {
            return Err(content(
                self.cert_key,
                self.cert,
                "no certificate found: the file must hold a PEM certificate chain (-----BEGIN CERTIFICATE----- blocks, the server's certificate first)".to_owned(),
            ));
        }
        let key_pem = read(self.key_key, self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            content(
                self.key_key,
                self.key,
                format!(
                    "no usable private key ({e}): the file must hold an unencrypted PEM key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
                ),
            )
        })?;
        CertifiedKey::from_der(chain, key, &provider())
            .map(Arc::new)
            .map_err(|e| self.refused(e.to_string()))
    }
}

/// A listener's certificate that a reload (SIGHUP) can replace: each new
/// handshake takes the current one; open connections keep theirs.
#[derive(Debug)]
pub struct ReloadableCert(std::sync::RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|key| key.clone())
    }
}

fn build_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// A generated self-signed certificate and its key, both PEM.
#[derive(Clone)]
pub struct SelfSigned {
    pub cert_pem: String,
    /// Secret: never log.
    pub key_pem: String,
    pub sha256_fingerprint: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("sha256_fingerprint", &self.sha256_fingerprint)
            .finish_non_exhaustive()
    }
}

/// Validity of the generated certificate. 825 days is the longest lifetime
/// Apple platforms accept for certificates from privately trusted issuers, so an
/// administrator who trusts it on a Mac or iPhone is not refused by the browser.
const SELF_SIGNED_DAYS: i64 = 825;

/// Generate a self-signed certificate for the Remote UI's HTTPS listener, valid
/// for `hosts` (names and/or IP addresses; the first is also the CN).
///
/// It is an end-entity certificate without basicConstraints, so browsers accept
/// it as a server certificate once trusted, and [`parse_ca_pem`] accepts it as a
/// (self-issued) trust anchor for another instance.
// The validity window is anchored on the wall clock at generation; a clock
// that is wrong now is wrong for whoever checks the certificate too.
#[allow(clippy::disallowed_methods)]
pub fn generate_self_signed(hosts: &[String]) -> Result<SelfSigned, TlsError> {
    let first = hosts.first().ok_or(TlsError::NoHosts)?;
    let gen_err = |e: rcgen::Error| TlsError::Generate {
        reason: e.to_string(),
    };
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(gen_err)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, first.as_str());
    dn.push(rcgen::DnType::OrganizationName, "hikyaku");
    params.distinguished_name = dn;
    // Backdate a day so a device whose clock is slightly behind still accepts it.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        sha256_fingerprint: fingerprint(cert.der()),
    })
}

/// SHA-256 fingerprint of DER bytes as upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// Test helpers shared by this crate's unit tests (tls, http, connection).
#[cfg(test)]
#[allow(clippy::unwrap_used)] // test helpers may unwrap
pub(crate) mod testutil {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    pub struct TestCa {
        pub cert: rcgen::Certificate,
        pub issuer: Issuer<'static, KeyPair>,
    }

    impl TestCa {
        pub fn new(cn: &str) -> Self {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            let key = KeyPair::generate().unwrap();
            let cert = p.self_signed(&key).unwrap();
            Self {
                cert,
                issuer: Issuer::new(p, key),
            }
        }

        pub fn der(&self) -> CertificateDer<'static> {
            self.cert.der().clone()
        }

        /// A leaf with the given SANs and CN; `validity` overrides the default dates.
        pub fn leaf(
            &self,
            sans: &[&str],
            cn: &str,
            validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
        ) -> Leaf {
            let mut p =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            if let Some((nb, na)) = validity {
                p.not_before = nb;
                p.not_after = na;
            }
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &self.issuer).unwrap();
            Leaf {
                pem: cert.pem(),
                der: cert.der().clone(),
                key_der: key.serialize_der(),
            }
        }
    }

    pub struct Leaf {
        pub pem: String,
        pub der: CertificateDer<'static>,
        pub key_der: Vec<u8>,
    }

    pub fn server_config_for(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der.clone()], key)
            .unwrap(),
        )
    }

    /// A tiny HTTPS server on 127.0.0.1 answering every request with `response`
    /// (raw HTTP/1.1 bytes). Handshake failures are ignored (the client reports them).
    pub async fn https_server(config: Arc<rustls::ServerConfig>, response: String) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let response = response.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 8192];
                    let mut got = Vec::new();
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                got.extend_from_slice(&buf[..n]);
                                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        addr
    }

    pub fn http_response(status: &str, extra_headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests may unwrap and read the real clock
mod tests {
    use super::testutil::*;
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn days(n: i64) -> time::Duration {
        time::Duration::days(n)
    }

    /// Handshake with a server presenting `leaf` and return the client's result.
    async fn handshake(leaf: &Leaf, policy: &TlsPolicy, host: &str) -> Result<(), std::io::Error> {
        let addr = https_server(server_config_for(leaf), http_response("200 OK", "", "{}")).await;
        let connector = tokio_rustls::TlsConnector::from(client_config(policy).unwrap());
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from(host.to_owned()).unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
        let mut s = String::new();
        tls.read_to_string(&mut s).await?;
        assert!(s.starts_with("HTTP/1.1 200"), "{s}");
        Ok(())
    }

    fn reason(err: std::io::Error) -> String {
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .expect("a rustls error");
        describe_tls_error(inner)
    }

    #[test]
    fn cn_errors_are_reasons_with_the_same_text() {
        let e = TlsError::CnMismatch {
            cn: "a".into(),
            host: "b".into(),
        };
        assert_eq!(e.reason().code, "tls-cn-mismatch");
        assert_eq!(
            e.to_string(),
            "certificate subject CN 'a' does not match host 'b' (Add CN to Verification Items is on) — \
             use a server certificate whose Common Name is the host name, or turn Add CN to Verification Items off"
        );
        let e = TlsError::NoCommonName { host: "b".into() };
        assert_eq!(e.reason().code, "tls-no-cn");
        assert_eq!(
            e.to_string(),
            "certificate has no subject CN to compare with host 'b' (Add CN to Verification Items is on) — \
             use a server certificate whose Common Name is the host name, or turn Add CN to Verification Items off"
        );
        assert_eq!(TlsError::NoHosts.reason(), Reason::text(TlsError::NoHosts));
        // The English of the other TLS reasons is what it always was.
        for (err, text) in [
            (
                rustls::Error::NoCertificatesPresented,
                "the server presented no certificate",
            ),
            (rustls::Error::General("x".into()), "TLS error: x"),
            (
                rustls::Error::InvalidCertificate(CertificateError::Revoked),
                "certificate has been revoked",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                "certificate is not valid for this host name",
            ),
        ] {
            assert_eq!(describe_tls_error(&err), text);
        }
    }

    #[test]
    fn wildcard_rules() {
        assert!(cn_matches("mail.example.com", "MAIL.Example.com"));
        assert!(cn_matches("mail.example.com.", "mail.example.com"));
        assert!(cn_matches("*.example.com", "mail.example.com"));
        assert!(cn_matches("*.Example.COM", "smtp.example.com"));
        assert!(!cn_matches("*.example.com", "example.com"));
        assert!(!cn_matches("*.example.com", "a.b.example.com"));
        assert!(!cn_matches("*.com", "example.com"));
        assert!(!cn_matches("m*.example.com", "mail.example.com"));
        assert!(!cn_matches("mail.*.com", "mail.example.com"));
        assert!(!cn_matches("*.*.example.com", "a.b.example.com"));
        assert!(!cn_matches("*", "localhost"));
        assert!(cn_matches("127.0.0.1", "127.0.0.1"));
        assert!(cn_matches("::1", "[0:0::1]"));
        assert!(!cn_matches("*.0.0.1", "127.0.0.1"));
        assert!(!cn_matches("other.example", "localhost"));
    }

    #[test]
    fn check_cn_on_real_certificates() {
        let ca = TestCa::new("Test CA");
        let leaf = ca.leaf(&["localhost"], "other.example", None);
        let err = check_cn(&leaf.der, "localhost").unwrap_err();
        assert_eq!(
            err.to_string().split(" — ").next().unwrap(),
            "certificate subject CN 'other.example' does not match host 'localhost' (Add CN to Verification Items is on)"
        );
        let wild = ca.leaf(&["*.example.com"], "*.example.com", None);
        check_cn(&wild.der, "mail.example.com").unwrap();
        assert!(check_cn(&wild.der, "a.b.example.com").is_err());
        assert!(matches!(
            check_cn(b"not a certificate", "localhost"),
            Err(TlsError::BadCertificate { .. })
        ));
    }

    #[tokio::test]
    async fn trusted_only_with_extra_ca() {
        let ca = TestCa::new("Test CA");
        let leaf = ca.leaf(&["localhost"], "localhost", None);
        let untrusted = handshake(&leaf, &TlsPolicy::default(), "localhost")
            .await
            .unwrap_err();
        assert!(reason(untrusted).contains("unknown issuer"));
        let policy = TlsPolicy {
            extra_cas: vec![ca.der()],
            ..TlsPolicy::default()
        };
        handshake(&leaf, &policy, "localhost").await.unwrap();
        // With CN checking on as well, a matching CN still passes.
        let policy = TlsPolicy {
            verify_cn: true,
            ..policy
        };
        handshake(&leaf, &policy, "localhost").await.unwrap();
    }

    #[tokio::test]
    async fn cn_check_and_san_check() {
        let ca = TestCa::new("Test CA");
        let leaf = ca.leaf(&["localhost"], "other.example", None);
        let policy = TlsPolicy {
            extra_cas: vec![ca.der()],
            ..TlsPolicy::default()
        };
        handshake(&leaf, &policy, "localhost").await.unwrap();
        let strict = TlsPolicy {
            verify_cn: true,
            ..policy.clone()
        };
        let r = reason(handshake(&leaf, &strict, "localhost").await.unwrap_err());
        assert!(
            r.contains("CN 'other.example' does not match host 'localhost'"),
            "{r}"
        );
        // SAN mismatch is reported with the names the certificate does carry.
        let r = reason(
            handshake(&leaf, &policy, "mail.example.com")
                .await
                .unwrap_err(),
        );
        assert!(
            r.contains("not valid for host mail.example.com (it names: localhost)"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn verify_off_accepts_anything() {
        let ca = TestCa::new("Nobody");
        let now = OffsetDateTime::now_utc();
        let leaf = ca.leaf(
            &["elsewhere.example"],
            "x",
            Some((now - days(30), now - days(1))),
        );
        let policy = TlsPolicy {
            verify: false,
            verify_cn: true,
            extra_cas: vec![],
        };
        handshake(&leaf, &policy, "localhost").await.unwrap();
    }

    #[tokio::test]
    async fn expired_leaf() {
        let ca = TestCa::new("Test CA");
        let now = OffsetDateTime::now_utc();
        let leaf = ca.leaf(
            &["localhost"],
            "localhost",
            Some((now - days(30), now - days(1))),
        );
        let policy = TlsPolicy {
            extra_cas: vec![ca.der()],
            ..TlsPolicy::default()
        };
        let r = reason(handshake(&leaf, &policy, "localhost").await.unwrap_err());
        assert!(r.contains("certificate has expired"), "{r}");
    }

    #[test]
    fn parse_ca_pem_accepts_and_refuses() {
        let now = OffsetDateTime::now_utc();
        let a = TestCa::new("CA One");
        let b = TestCa::new("CA Two");
        let one = parse_ca_pem(&a.cert.pem(), now).unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].subject.contains("CA One"), "{}", one[0].subject);
        assert_eq!(one[0].sha256_fingerprint, fingerprint(a.cert.der()));
        assert_eq!(one[0].sha256_fingerprint.len(), 32 * 3 - 1);

        let two = parse_ca_pem(&format!("{}\n{}", a.cert.pem(), b.cert.pem()), now).unwrap();
        assert_eq!(two.len(), 2);
        assert!(two[1].subject.contains("CA Two"));

        assert!(matches!(
            parse_ca_pem("hello", now),
            Err(TlsError::NoCertificates)
        ));
        let broken = "-----BEGIN CERTIFICATE-----\nMIIB!!!notbase64\n-----END CERTIFICATE-----\n";
        let err = parse_ca_pem(broken, now).unwrap_err();
        assert!(matches!(err, TlsError::Pem { index: 1, .. }), "{err}");
        let truncated = a.cert.pem().replace("-----END CERTIFICATE-----", "");
        assert!(parse_ca_pem(&truncated, now).is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_ca_pem(garbage, now),
            Err(TlsError::Malformed { index: 1, .. })
        ));

        let leaf = a.leaf(&["localhost"], "leaf.example", None);
        let err = parse_ca_pem(&format!("{}{}", a.cert.pem(), leaf.pem), now).unwrap_err();
        assert!(matches!(err, TlsError::NotCa { index: 2, .. }), "{err}");
        assert!(err.to_string().contains("leaf.example"), "{err}");

        let err = parse_ca_pem(&a.cert.pem(), now + days(365 * 5000)).unwrap_err();
        assert!(matches!(err, TlsError::Expired { index: 1, .. }), "{err}");
        assert!(err.to_string().contains("expired"));
    }

    #[tokio::test]
    async fn self_signed_round_trip() {
        assert!(matches!(generate_self_signed(&[]), Err(TlsError::NoHosts)));
        let ss = generate_self_signed(&["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        assert!(!format!("{ss:?}").contains("PRIVATE"));
        let config = server_config(&ss.cert_pem, &ss.key_pem).unwrap();
        let cas = parse_ca_pem(&ss.cert_pem, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(cas[0].sha256_fingerprint, ss.sha256_fingerprint);
        let addr = https_server(config, http_response("200 OK", "", "{}")).await;
        let policy = TlsPolicy {
            verify_cn: true,
            extra_cas: vec![CertificateDer::from(cas[0].der.clone())],
            ..TlsPolicy::default()
        };
        let connector = tokio_rustls::TlsConnector::from(client_config(&policy).unwrap());
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut s = String::new();
        tls.read_to_string(&mut s).await.unwrap();
        assert!(s.starts_with("HTTP/1.1 200"));
        // A mismatched key is refused with a reason.
        let other = generate_self_signed(&["localhost".to_owned()]).unwrap();
        assert!(matches!(
            server_config(&ss.cert_pem, &other.key_pem),
            Err(TlsError::Config { .. })
        ));
        assert!(matches!(
            server_config(&ss.cert_pem, "nope"),
            Err(TlsError::PrivateKey { .. })
        ));
    }
}
