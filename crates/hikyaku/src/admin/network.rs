//! Management → Network (the outbound proxy) and Date/Time (the display
//! time zone).

use super::{Admin, AdminError, Live, Problem};
use crate::i18n::Reason;
use crate::proxy::{self, ProxyInput, ProxySettings};
use crate::roles::Permission;
use crate::store::audit::Action;

/// Display time zones offered: whole and half-hour offsets, named by a city.
pub const ZONES: &[(&str, &str)] = &[
    ("-08:00", "UTC-08:00 (Los Angeles)"),
    ("-05:00", "UTC-05:00 (New York)"),
    ("+00:00", "UTC"),
    ("+01:00", "UTC+01:00 (Berlin, Paris)"),
    ("+05:30", "UTC+05:30 (Kolkata)"),
    ("+08:00", "UTC+08:00 (Singapore, Shanghai)"),
    ("+09:00", "UTC+09:00 (Tokyo, Seoul)"),
    ("+10:00", "UTC+10:00 (Sydney)"),
];

/// The setting that holds the display time zone.
pub const TIME_ZONE_SETTING: &str = "display_time_zone";

impl Admin<'_> {
    /// Validates and applies a proxy change: store, live setting, audit.
    /// Returns the proxy now in use (`None`: off).
    pub async fn save_proxy(
        &self,
        live: &Live<'_>,
        input: &ProxyInput,
    ) -> Result<Option<ProxySettings>, AdminError> {
        self.require(Permission::ManageNetwork)?;
        let stored_password = proxy::current(live.proxy).and_then(|p| p.password);
        let settings = proxy::validate(input, stored_password).map_err(|problems| {
            AdminError::Invalid(problems.into_iter().map(Problem::Proxy).collect())
        })?;
        proxy::save(self.store, live.key, settings.as_ref()).await?;
        if let Ok(mut current) = live.proxy.write() {
            *current = settings.clone();
        }
        self.audit(Action::NetworkProxy, proxy::audit_detail(settings.as_ref()))
            .await;
        Ok(settings)
    }

    /// Sets the display time zone to one of [`ZONES`].
    pub async fn set_time_zone(&self, zone: &str) -> Result<(), AdminError> {
        self.require(Permission::ManageNetwork)?;
        if !ZONES.iter().any(|(z, _)| *z == zone) {
            return Err(Problem::UnknownTimeZone(zone.to_string()).into());
        }
        self.store.set_setting(TIME_ZONE_SETTING, zone).await?;
        self.audit(
            Action::DisplayTimeZone,
            Reason::new("audit-time-zone").arg("zone", zone),
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testing;
    use crate::roles::Role;

    #[tokio::test]
    async fn time_zone_is_one_of_the_list_and_the_network_admins() {
        let (_dir, store) = testing::store().await;
        let user = testing::admin(&store, Role::GeneralUser);
        assert!(matches!(
            user.set_time_zone("+09:00").await,
            Err(AdminError::Forbidden)
        ));
        let network = testing::admin(&store, Role::NetworkAdmin);
        assert!(matches!(
            network.set_time_zone("+09:30").await,
            Err(AdminError::Invalid(p)) if matches!(p[..], [Problem::UnknownTimeZone(_)])
        ));
        network.set_time_zone("+09:00").await.expect("saved");
        assert_eq!(
            store.setting(TIME_ZONE_SETTING).await.expect("setting"),
            Some("+09:00".to_string())
        );
    }

    #[tokio::test]
    async fn the_proxy_is_validated_and_the_network_admins() {
        let (dir, store) = testing::store().await;
        let server = testing::Server::new(dir.path(), &store);
        let live = server.live();
        let input = ProxyInput {
            host: "http://proxy.example.com".into(),
            port: "8080".into(),
            ..Default::default()
        };
        assert!(matches!(
            testing::admin(&store, Role::GeneralUser)
                .save_proxy(&live, &input)
                .await,
            Err(AdminError::Forbidden)
        ));
        let network = testing::admin(&store, Role::NetworkAdmin);
        assert!(testing::refused_for(
            network.save_proxy(&live, &input).await,
            |p| matches!(p, Problem::Proxy(_))
        ));
        let input = ProxyInput {
            host: "proxy.example.com".into(),
            ..input
        };
        let saved = network.save_proxy(&live, &input).await.expect("saved");
        assert_eq!(saved.as_ref().map(|p| p.port), Some(8080));
        assert_eq!(proxy::current(live.proxy).map(|p| p.port), Some(8080));
    }
}
