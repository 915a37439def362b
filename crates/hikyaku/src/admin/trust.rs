//! Management → CA Certificates: the extra trust anchors of every outbound
//! TLS connection, in the store and in the live trust set.

use super::{Admin, AdminError, Live, LiveCas, Problem};
use crate::i18n::Reason;
use crate::roles::Permission;
use crate::store::Store;
use crate::store::audit::Action;
use crate::store::ca::{NewCa, StoredCa};

/// Largest PEM text taken at once, in bytes (a bundle of some 100 CAs).
pub const MAX_PEM_TEXT: usize = 256 * 1024;
/// Most CA certificates trusted at once: every outbound TLS client builds
/// its trust set from all of them.
pub const MAX_CAS: usize = 100;

impl Admin<'_> {
    /// Adds the CA certificates in PEM text; returns how many.
    pub async fn add_cas(&self, live: &Live<'_>, pem: &str) -> Result<usize, AdminError> {
        self.require(Permission::ManageNetwork)?;
        if pem.len() > MAX_PEM_TEXT {
            return Err(Problem::CaTextTooLarge {
                limit: MAX_PEM_TEXT,
            }
            .into());
        }
        let stored = self.store.ca_certificates().await?.len();
        let parsed = crate::tls::parse_ca_pem(pem, self.clock.now()).map_err(Problem::Ca)?;
        let new: Vec<NewCa> = parsed
            .iter()
            .map(|c| NewCa {
                fingerprint: c.sha256_fingerprint.clone(),
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                not_before: c.not_before.unix_timestamp(),
                not_after: c.not_after.unix_timestamp(),
                der: c.der.clone(),
                // Only an Administrator may decide whom the Google
                // credentials are sent to; a NetworkAdmin's CA anchors the
                // other connections only.
                for_google: self.actor.role == crate::roles::Role::Administrator,
            })
            .collect();
        if stored + new.len() > MAX_CAS {
            return Err(Problem::TooManyCas { limit: MAX_CAS }.into());
        }
        self.store
            .add_ca_certificates(&new, self.clock.unix())
            .await?;
        reload(self.store, live).await?;
        for c in &parsed {
            self.audit(Action::CaAdd, ca(&c.subject, &c.sha256_fingerprint))
                .await;
        }
        Ok(parsed.len())
    }

    /// Removes a CA certificate; returns what was removed.
    pub async fn delete_ca(&self, live: &Live<'_>, id: i64) -> Result<StoredCa, AdminError> {
        self.require(Permission::ManageNetwork)?;
        let removed = self.store.delete_ca_certificate(id).await?;
        reload(self.store, live).await?;
        self.audit(Action::CaDelete, ca(&removed.subject, &removed.fingerprint))
            .await;
        Ok(removed)
    }
}

/// The detail of a CA certificate entry: its subject and fingerprint.
fn ca(subject: &str, fingerprint: &str) -> Reason {
    Reason::new("audit-ca")
        .arg("subject", subject)
        .arg("fingerprint", fingerprint)
}

/// Re-reads the stored CA certificates into the live trust set.
async fn reload(store: &Store, live: &Live<'_>) -> Result<(), AdminError> {
    let stored = store.ca_certificates().await?;
    let google = stored
        .iter()
        .filter(|c| c.for_google)
        .map(|c| c.der.clone());
    crate::tls::replace_extra_cas(live.google_cas, google);
    crate::tls::replace_extra_cas(live.cas, stored.into_iter().map(|c| c.der));
    Ok(())
}

/// The trust sets the store holds, as the server starts with them: every
/// extra CA, and those that also anchor the Google account.
pub async fn load(store: &Store) -> Result<(LiveCas, LiveCas), crate::store::StoreError> {
    let stored = store.ca_certificates().await?;
    let google = crate::tls::extra_cas(
        stored
            .iter()
            .filter(|c| c.for_google)
            .map(|c| c.der.clone()),
    );
    Ok((
        crate::tls::extra_cas(stored.into_iter().map(|c| c.der)),
        google,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testing;
    use crate::roles::Role;

    #[tokio::test]
    async fn trust_anchors_are_the_network_admins_and_must_be_certificates() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        assert!(matches!(
            testing::admin(&store, Role::GeneralUser)
                .add_cas(&live, "")
                .await,
            Err(AdminError::Forbidden)
        ));
        assert!(matches!(
            testing::admin(&store, Role::GeneralUser)
                .delete_ca(&live, 1)
                .await,
            Err(AdminError::Forbidden)
        ));
        let network = testing::admin(&store, Role::NetworkAdmin);
        assert!(testing::refused_for(
            network.add_cas(&live, "not a certificate").await,
            |p| matches!(p, Problem::Ca(_))
        ));
        assert!(live.cas.read().expect("lock").is_empty());
    }

    fn ca_pem(name: &str) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("self-signed").pem()
    }

    #[tokio::test]
    async fn the_trust_set_and_its_upload_are_bounded() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        let network = testing::admin(&store, Role::NetworkAdmin);
        let huge = "x".repeat(MAX_PEM_TEXT + 1);
        assert!(testing::refused_for(
            network.add_cas(&live, &huge).await,
            |p| matches!(p, Problem::CaTextTooLarge { .. })
        ));
        let bundle: String = (0..MAX_CAS).map(|i| ca_pem(&format!("CA {i}"))).collect();
        assert_eq!(
            network
                .add_cas(&live, &bundle)
                .await
                .expect("within the cap"),
            MAX_CAS
        );
        assert!(testing::refused_for(
            network.add_cas(&live, &ca_pem("one too many")).await,
            |p| matches!(p, Problem::TooManyCas { .. })
        ));
        assert_eq!(store.ca_certificates().await.expect("list").len(), MAX_CAS);
        assert_eq!(live.cas.read().expect("lock").len(), MAX_CAS);
    }

    #[tokio::test]
    async fn only_an_administrators_ca_anchors_google() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        testing::admin(&store, Role::NetworkAdmin)
            .add_cas(&live, &ca_pem("network"))
            .await
            .expect("added");
        assert_eq!(live.cas.read().expect("lock").len(), 1);
        assert!(live.google_cas.read().expect("lock").is_empty());
        testing::admin(&store, Role::Administrator)
            .add_cas(&live, &ca_pem("administrator"))
            .await
            .expect("added");
        assert_eq!(live.cas.read().expect("lock").len(), 2);
        assert_eq!(live.google_cas.read().expect("lock").len(), 1);
        let stored = store.ca_certificates().await.expect("list");
        assert_eq!(
            stored.iter().map(|c| c.for_google).collect::<Vec<_>>(),
            [false, true]
        );
        // A restart loads the same two sets.
        let (all, google) = load(&store).await.expect("load");
        assert_eq!(
            (
                all.read().expect("lock").len(),
                google.read().expect("lock").len()
            ),
            (2, 1)
        );
    }
}
