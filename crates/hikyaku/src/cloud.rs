//! Clouds: the endpoint presets of an account, as data (protocols.md §11).
//! Microsoft's national clouds use other login, SMTP and Graph hosts and
//! another SMTP resource; every value here is a default that an account may
//! override, so that nothing else in the code branches on the cloud.

use serde::{Deserialize, Serialize};

use crate::provider::Provider;

/// Where an account's tenant lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// Microsoft's public cloud (and GCC), or Google.
    #[default]
    Worldwide,
    /// Microsoft 365 GCC High.
    GccHigh,
    /// Microsoft 365 DoD.
    Dod,
    /// Microsoft 365 operated by 21Vianet.
    China,
}

/// The endpoints of a cloud for one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Host of the authorization server (Microsoft: login.*; Google: the
    /// token host).
    pub authority_host: &'static str,
    /// Upstream SMTP host (port 587, STARTTLS).
    pub smtp_host: &'static str,
    /// Scope for SMTP with a delegated token.
    pub smtp_scope_delegated: &'static str,
    /// Scope for SMTP with an app-only token.
    pub smtp_scope_app: &'static str,
    /// Host of the HTTP sending API (Graph or Gmail).
    pub api_host: &'static str,
}

const MICROSOFT_WORLDWIDE: Preset = Preset {
    authority_host: "login.microsoftonline.com",
    smtp_host: "smtp.office365.com",
    smtp_scope_delegated: "https://outlook.office.com/SMTP.Send",
    smtp_scope_app: "https://outlook.office365.com/.default",
    api_host: "graph.microsoft.com",
};

const MICROSOFT_GCC_HIGH: Preset = Preset {
    authority_host: "login.microsoftonline.us",
    smtp_host: "smtp.office365.us",
    smtp_scope_delegated: "https://outlook.office365.us/SMTP.Send",
    smtp_scope_app: "https://outlook.office365.us/.default",
    api_host: "graph.microsoft.us",
};

const MICROSOFT_DOD: Preset = Preset {
    authority_host: "login.microsoftonline.us",
    smtp_host: "outlook-dod.office365.us",
    smtp_scope_delegated: "https://outlook-dod.office365.us/SMTP.Send",
    smtp_scope_app: "https://outlook-dod.office365.us/.default",
    api_host: "dod-graph.microsoft.us",
};

const MICROSOFT_CHINA: Preset = Preset {
    authority_host: "login.partner.microsoftonline.cn",
    smtp_host: "smtp.partner.outlook.cn",
    smtp_scope_delegated: "https://partner.outlook.cn/SMTP.Send",
    smtp_scope_app: "https://partner.outlook.cn/.default",
    api_host: "microsoftgraph.chinacloudapi.cn",
};

const GOOGLE: Preset = Preset {
    authority_host: "oauth2.googleapis.com",
    smtp_host: "smtp.gmail.com",
    smtp_scope_delegated: "https://mail.google.com/",
    smtp_scope_app: "https://mail.google.com/",
    api_host: "gmail.googleapis.com",
};

impl Cloud {
    pub const ALL: [Cloud; 4] = [Cloud::Worldwide, Cloud::GccHigh, Cloud::Dod, Cloud::China];

    pub const fn as_str(self) -> &'static str {
        match self {
            Cloud::Worldwide => "worldwide",
            Cloud::GccHigh => "gcc_high",
            Cloud::Dod => "dod",
            Cloud::China => "china",
        }
    }

    pub fn parse(text: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The clouds a provider offers: Google has one.
    pub fn offered_by(provider: Provider) -> &'static [Cloud] {
        match provider {
            Provider::Microsoft => &Cloud::ALL,
            Provider::Google => &[Cloud::Worldwide],
        }
    }

    /// The endpoints of this cloud for `provider`. Google has only the public
    /// endpoints, whatever the cloud says.
    pub fn preset(self, provider: Provider) -> Preset {
        match (provider, self) {
            (Provider::Google, _) => GOOGLE,
            (Provider::Microsoft, Cloud::Worldwide) => MICROSOFT_WORLDWIDE,
            (Provider::Microsoft, Cloud::GccHigh) => MICROSOFT_GCC_HIGH,
            (Provider::Microsoft, Cloud::Dod) => MICROSOFT_DOD,
            (Provider::Microsoft, Cloud::China) => MICROSOFT_CHINA,
        }
    }

    /// The default Microsoft endpoint (tenant `common`) in this cloud.
    pub fn microsoft_endpoint(self, tenant: &str) -> String {
        format!(
            "https://{}/{tenant}/oauth2/v2.0",
            self.preset(Provider::Microsoft).authority_host
        )
    }
}

impl std::fmt::Display for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for c in Cloud::ALL {
            assert_eq!(Cloud::parse(c.as_str()), Some(c));
        }
        assert_eq!(Cloud::parse("mars"), None);
    }

    #[test]
    fn the_worldwide_preset_is_todays_public_endpoints() {
        let p = Cloud::Worldwide.preset(Provider::Microsoft);
        assert_eq!(p.smtp_host, Provider::Microsoft.default_smtp().0);
        assert_eq!(
            Cloud::Worldwide.microsoft_endpoint("common"),
            crate::provider::MICROSOFT_DEFAULT_ENDPOINT
        );
        assert_eq!(p.smtp_scope_delegated, crate::provider::MICROSOFT_SCOPES[0]);
    }

    #[test]
    fn national_clouds_use_their_own_hosts() {
        let high = Cloud::GccHigh.preset(Provider::Microsoft);
        assert_eq!(high.authority_host, "login.microsoftonline.us");
        assert_eq!(high.api_host, "graph.microsoft.us");
        let cn = Cloud::China.preset(Provider::Microsoft);
        assert_eq!(cn.authority_host, "login.partner.microsoftonline.cn");
        // Google has one set of endpoints.
        assert_eq!(
            Cloud::China.preset(Provider::Google),
            Cloud::Worldwide.preset(Provider::Google)
        );
        assert_eq!(Cloud::offered_by(Provider::Google), &[Cloud::Worldwide]);
    }
}
