//! Per-run test PKI: a CA made with rcgen and a leaf for `localhost` /
//! `127.0.0.1`, shaped by [`CertMode`] to exercise the client's checks.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{CertMode, Error};

/// The certificate material of one run.
pub(crate) struct Pki {
    /// PEM of the CA handed to tests (for `Untrusted`: one that did not sign the leaf).
    pub ca_pem: String,
    pub leaf_der: CertificateDer<'static>,
    pub leaf_key: PrivatePkcs8KeyDer<'static>,
}

fn make_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("fakecloud {name} CA"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "fakecloud");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

impl Pki {
    pub fn generate(mode: CertMode) -> Result<Self, Error> {
        let exported = make_ca("test")?;
        // Untrusted: the leaf chains to a CA nobody is given.
        let hidden;
        let signer = match mode {
            CertMode::Untrusted => {
                hidden = make_ca("hidden")?;
                &hidden
            }
            CertMode::Trusted | CertMode::CnMismatch => &exported,
        };
        let cn = match mode {
            CertMode::CnMismatch => "other.example",
            CertMode::Trusted | CertMode::Untrusted => "localhost",
        };
        // SAN stays valid in every mode, so only the CN (or the chain) is wrong.
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, signer)?;
        Ok(Self {
            ca_pem: exported.pem(),
            leaf_der: leaf.der().clone(),
            leaf_key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// A rustls server config presenting the leaf, with the given ALPN list.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.leaf_der.clone()],
                PrivateKeyDer::Pkcs8(self.leaf_key.clone_key()),
            )?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }
}
