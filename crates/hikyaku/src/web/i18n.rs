//! Japanese and English. All UI text lives in `locales/{en,ja}/main.ftl`; the
//! Japanese labels of the seed's screens are the seed's own, character for
//! character. The locale comes from the `hikyaku_lang` cookie, else from
//! Accept-Language, else English.

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{Loader, static_loader};
use unic_langid::{LanguageIdentifier, langid};

static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        // Unicode isolation marks would end up inside the HTML and the labels.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static EN: LanguageIdentifier = langid!("en");
static JA: LanguageIdentifier = langid!("ja");

/// Name of the cookie that remembers the chosen language.
pub const LANG_COOKIE: &str = "hikyaku_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    En,
    Ja,
}

impl Locale {
    pub fn code(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Ja => "ja",
        }
    }

    pub fn parse(code: &str) -> Option<Locale> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Locale::En),
            "ja" => Some(Locale::Ja),
            _ => None,
        }
    }

    /// Picks a locale from a cookie value and an Accept-Language header.
    pub fn negotiate(cookie: Option<&str>, accept_language: Option<&str>) -> Locale {
        if let Some(l) = cookie.and_then(Locale::parse) {
            return l;
        }
        let Some(header) = accept_language else {
            return Locale::En;
        };
        let mut best: Option<(f32, Locale)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let locale = if tag.starts_with("ja") {
                Locale::Ja
            } else if tag.starts_with("en") {
                Locale::En
            } else {
                continue;
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, locale));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Locale::En)
    }

    fn id(self) -> &'static LanguageIdentifier {
        match self {
            Locale::En => &EN,
            Locale::Ja => &JA,
        }
    }
}

/// Translator handed to templates: `{{ tr.t("token-status") }}`.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    pub locale: Locale,
}

impl Tr {
    pub fn new(locale: Locale) -> Self {
        Self { locale }
    }

    /// The text of `key`.
    pub fn t(&self, key: &str) -> String {
        LOCALES.lookup(self.locale.id(), key)
    }

    /// The text of `key` with named arguments.
    pub fn args(&self, key: &str, args: &[(&'static str, String)]) -> String {
        let map: HashMap<Cow<'static, str>, FluentValue> = args
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), FluentValue::from(v.clone())))
            .collect();
        LOCALES.lookup_with_args(self.locale.id(), key, &map)
    }

    /// The text of `key`, or `None` when no locale has it.
    pub fn try_t(&self, key: &str) -> Option<String> {
        LOCALES.try_lookup(self.locale.id(), key)
    }

    pub fn code(&self) -> &'static str {
        self.locale.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(locale: &str) -> Vec<String> {
        let path = format!("{}/locales/{locale}/main.ftl", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_string()))
            .filter(|k| !k.is_empty() && !k.starts_with('#'))
            .collect()
    }

    #[test]
    fn every_key_exists_in_both_locales() {
        let en = keys("en");
        let ja = keys("ja");
        assert_eq!(en, ja);
        for key in &en {
            // Messages with arguments need them to resolve; look them up with dummies.
            let args: HashMap<Cow<'static, str>, FluentValue> = [
                "user", "role", "zone", "provider", "secs", "queued", "sending", "deferred",
                "failed", "sent",
            ]
            .iter()
            .map(|k| (Cow::Borrowed(*k), FluentValue::from("x")))
            .collect();
            assert!(
                LOCALES.try_lookup_with_args(&JA, key, &args).is_some(),
                "ja lacks {key}"
            );
            assert!(
                LOCALES.try_lookup_with_args(&EN, key, &args).is_some(),
                "en lacks {key}"
            );
        }
    }

    #[test]
    fn seed_labels_are_exact_in_japanese() {
        let ja = Tr::new(Locale::Ja);
        assert_eq!(ja.t("menu-oauth-microsoft"), "OAuth 2.0(Microsoft)の設定");
        assert_eq!(ja.t("token-status-active"), "稼働中");
        assert_eq!(ja.t("connection-status-successful"), "成功");
        assert_eq!(
            ja.t("ms-endpoint"),
            "Microsoft Entra ID認可サーバーのエンドポイント"
        );
        assert_eq!(
            ja.args(
                "logged-in-as",
                &[("user", "a".into()), ("role", "b".into())]
            ),
            "a(b)でログイン中"
        );
    }

    #[test]
    fn negotiation_prefers_cookie_then_quality() {
        assert_eq!(Locale::negotiate(Some("ja"), Some("en")), Locale::Ja);
        assert_eq!(
            Locale::negotiate(None, Some("fr, ja;q=0.8, en;q=0.5")),
            Locale::Ja
        );
        assert_eq!(Locale::negotiate(None, Some("de")), Locale::En);
        assert_eq!(Locale::negotiate(Some("xx"), None), Locale::En);
    }
}
