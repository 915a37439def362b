//! Japanese and English. All text for people lives in
//! `locales/{en,ja}/main.ftl`: the Remote UI's, and the English of the
//! reasons the library stores ([`Reason`]). The Japanese labels of the seed's
//! screens are the seed's own, character for character. The Remote UI takes
//! the locale from the `hikyaku_lang` cookie, else from Accept-Language,
//! else English.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{Loader, static_loader};
use serde::{Deserialize, Serialize};
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

/// A message for a user: a Fluent id and its arguments. Pages render it in
/// the request's language; logs and the JSON API get the English text
/// (`Display`). Text that comes verbatim from elsewhere (a remote server's
/// reply) travels as [`Msg::verbatim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub key: Cow<'static, str>,
    pub args: Vec<(Cow<'static, str>, String)>,
    /// Arguments that are messages themselves, rendered in the same language.
    pub nested: Vec<(Cow<'static, str>, Msg)>,
}

impl Msg {
    pub fn new(key: impl Into<Cow<'static, str>>) -> Self {
        Self {
            key: key.into(),
            args: Vec::new(),
            nested: Vec::new(),
        }
    }

    /// Adds the argument `$name`.
    pub fn arg(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        self.args.push((Cow::Borrowed(name), value.to_string()));
        self
    }

    /// Adds the argument `$name`, a message in the same language.
    pub fn nested(mut self, name: &'static str, value: Msg) -> Self {
        self.nested.push((Cow::Borrowed(name), value));
        self
    }

    /// Text shown as it is, in every language.
    pub fn verbatim(text: impl Into<String>) -> Self {
        Self::new("verbatim").arg("text", text.into())
    }

    pub fn render(&self, tr: &Tr) -> String {
        if self.args.is_empty() && self.nested.is_empty() {
            return tr.t(&self.key);
        }
        LOCALES.lookup_with_args(tr.locale.id(), &self.key, &self.fluent_args(tr))
    }

    /// The text, or `None` when no locale has the message.
    pub fn try_render(&self, tr: &Tr) -> Option<String> {
        LOCALES.try_lookup_with_args(tr.locale.id(), &self.key, &self.fluent_args(tr))
    }

    fn fluent_args(&self, tr: &Tr) -> HashMap<Cow<'static, str>, FluentValue<'_>> {
        let mut args: HashMap<Cow<'static, str>, FluentValue> = self
            .args
            .iter()
            .map(|(k, v)| (k.clone(), FluentValue::from(v.clone())))
            .collect();
        for (k, m) in &self.nested {
            args.insert(k.clone(), FluentValue::from(m.render(tr)));
        }
        args
    }

    /// The English text, for logs and the JSON API.
    pub fn en(&self) -> String {
        self.render(&Tr::new(Locale::En))
    }
}

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.en())
    }
}

/// Renders a list of messages in one language.
pub fn render_all(tr: &Tr, msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(|m| m.render(tr)).collect()
}

/// Why something failed or needs attention (a connection check, a token, a
/// warning beside them), as data: a code and its arguments, built where the
/// reason arises and stored as JSON. Its text is the Fluent message
/// `reason-{code}`: pages render it in their language, `Display` gives the
/// English for logs, the CLI and the JSON API. Text that a remote server
/// sent is an argument, never part of the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, Arg>,
}

/// An argument of a [`Reason`]: text shown as it is, or a reason rendered in
/// the same language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arg {
    Text(String),
    Reason(Reason),
}

impl Reason {
    pub fn new(code: &str) -> Self {
        Self {
            code: code.to_owned(),
            args: BTreeMap::new(),
        }
    }

    /// Adds the argument `$name`, shown as it is.
    pub fn arg(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.args
            .insert(name.to_owned(), Arg::Text(value.to_string()));
        self
    }

    /// Adds the argument `$name`, a reason in the same language.
    pub fn nested(mut self, name: &str, value: Reason) -> Self {
        self.args.insert(name.to_owned(), Arg::Reason(value));
        self
    }

    /// English text of ours that has no code of its own (yet), or that
    /// quotes a remote server at length; shown as it is in every language.
    pub fn text(text: impl std::fmt::Display) -> Self {
        Self::new("text").arg("text", text)
    }

    /// Prose stored by an older version, before reasons were data; shown
    /// as it is.
    pub fn legacy(text: impl std::fmt::Display) -> Self {
        Self::new("legacy").arg("text", text)
    }

    /// The reasons joined with the list separator of the language; `None`
    /// for no reasons.
    pub fn list(items: impl IntoIterator<Item = Reason>) -> Option<Reason> {
        items
            .into_iter()
            .reduce(|acc, r| Reason::new("list").nested("first", acc).nested("second", r))
    }

    /// The Fluent message of this reason.
    pub fn msg(&self) -> Msg {
        let mut m = Msg::new(format!("reason-{}", self.code));
        for (name, arg) in &self.args {
            match arg {
                Arg::Text(t) => m.args.push((Cow::Owned(name.clone()), t.clone())),
                Arg::Reason(r) => m.nested.push((Cow::Owned(name.clone()), r.msg())),
            }
        }
        m
    }

    /// The text in the language of `tr`. A code this version does not know
    /// (a newer version wrote it), or arguments that do not fit its message,
    /// show as the stored form rather than as nothing.
    pub fn render(&self, tr: &Tr) -> String {
        self.msg().try_render(tr).unwrap_or_else(|| self.to_json())
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        // A struct of strings and maps always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| self.code.clone())
    }

    /// Reads the stored form; text that is not a stored reason is prose of
    /// an older version, shown as it is.
    pub fn from_stored(text: &str) -> Reason {
        serde_json::from_str(text).unwrap_or_else(|_| Reason::legacy(text))
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(&Tr::new(Locale::En)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages of a locale: id and text, in file order. The lines of
    /// a select (indented, or closing it with `}`) belong to the message
    /// above them.
    fn messages(locale: &str) -> Vec<(String, String)> {
        let path = format!("{}/locales/{locale}/main.ftl", env!("CARGO_MANIFEST_DIR"));
        let mut out: Vec<(String, String)> = Vec::new();
        for l in std::fs::read_to_string(path).unwrap().lines() {
            if l.starts_with('#') || l.trim().is_empty() {
                continue;
            }
            if l.starts_with([' ', '}']) {
                if let Some((_, text)) = out.last_mut() {
                    text.push('\n');
                    text.push_str(l);
                }
            } else if let Some((k, v)) = l.split_once(" = ") {
                out.push((k.trim().to_string(), v.to_string()));
            }
        }
        out
    }

    /// The `$variables` a message text uses, sorted.
    fn variables(text: &str) -> Vec<String> {
        let mut vars: Vec<String> = text
            .split('$')
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .collect()
            })
            .collect();
        vars.sort();
        vars.dedup();
        vars
    }

    #[test]
    fn every_key_exists_in_both_locales() {
        let en = messages("en");
        let ja = messages("ja");
        let en_keys: Vec<&String> = en.iter().map(|(k, _)| k).collect();
        let ja_keys: Vec<&String> = ja.iter().map(|(k, _)| k).collect();
        assert_eq!(en_keys, ja_keys);
        for ((key, en_text), (_, ja_text)) in en.iter().zip(&ja) {
            let vars = variables(en_text);
            assert_eq!(
                vars,
                variables(ja_text),
                "{key}: en and ja use other arguments"
            );
            // Resolve with every argument given, so that Fluent reports no error.
            let args: HashMap<Cow<'static, str>, FluentValue> = vars
                .iter()
                .map(|k| (Cow::Owned(k.clone()), FluentValue::from("x")))
                .collect();
            for (id, name) in [(&JA, "ja"), (&EN, "en")] {
                let text = LOCALES.try_lookup_with_args(id, key, &args);
                assert!(
                    text.as_deref()
                        .is_some_and(|t| !t.contains("{$") && !t.contains("{ $")),
                    "{name} cannot render {key}: {text:?}"
                );
            }
        }
    }

    /// Fluent ids named in the code: the literal after `.t(`, `.args(`,
    /// `.try_t(`, `Msg::new(`, `::bad(`, and any `"err-…"` literal.
    fn ids_in(text: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for (i, _) in text.match_indices('"') {
            let before = &text[..i];
            let rest = &text[i + 1..];
            let Some(end) = rest.find('"') else { continue };
            let lit = &rest[..end];
            let is_id = !lit.is_empty()
                && lit
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            let called = [".t(", ".args(", ".try_t(", "Msg::new(", "::bad("]
                .iter()
                .any(|f| before.ends_with(f) && !before.ends_with("format!("));
            if is_id && before.ends_with("Reason::new(") {
                ids.push(format!("reason-{lit}"));
            } else if is_id && (called || lit.starts_with("err-") || lit.starts_with("reason-")) {
                ids.push(lit.to_string());
            }
        }
        ids
    }

    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "html") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Tests may name ids that do not exist.
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                out.push((path.display().to_string(), code));
            }
        }
    }

    #[test]
    fn every_key_used_in_code_exists_in_both_locales() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        sources(&root.join("templates"), &mut files);
        let en: Vec<String> = messages("en").into_iter().map(|(k, _)| k).collect();
        let ja: Vec<String> = messages("ja").into_iter().map(|(k, _)| k).collect();
        let mut seen = 0;
        for (path, text) in &files {
            for id in ids_in(text) {
                seen += 1;
                assert!(
                    en.contains(&id),
                    "{path} uses {id}, which en/main.ftl lacks"
                );
                assert!(
                    ja.contains(&id),
                    "{path} uses {id}, which ja/main.ftl lacks"
                );
            }
        }
        assert!(seen > 200, "only {seen} ids found: the scan is broken");
        assert_eq!(
            ids_in(r#"tr.t("a-b") Msg::new("err-x") x("Hello") format!("y-{}") Reason::new("z")"#),
            ["a-b", "err-x", "reason-z"]
        );
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
    fn a_reason_renders_in_each_language_from_its_code() {
        let ja = Tr::new(Locale::Ja);
        let r = Reason::new("refused").arg("target", "localhost:1");
        assert_eq!(
            r.to_string(),
            "connection to localhost:1 was refused — nothing is listening there, or a firewall rejects it"
        );
        let text = r.render(&ja);
        assert!(
            text.contains("localhost:1") && !text.contains("refused"),
            "{text}"
        );

        // Nested reasons render in the same language; the provider's error
        // code is an argument, shown as it came.
        let r = Reason::new("reauthorize-error")
            .arg("error", "invalid_client")
            .nested("advice", Reason::new("advice-google-invalid-client"));
        assert_eq!(
            r.to_string(),
            "re-authorization required (invalid_client): Google does not accept the Client ID or Client Secret: check both on the Basic Settings page"
        );
        let text = r.render(&ja);
        assert!(
            text.starts_with("再認可が必要です(invalid_client)"),
            "{text}"
        );
        assert!(!text.contains("Google does not accept"), "{text}");

        // The stored form, and back.
        let json = r.to_json();
        assert_eq!(
            json,
            r#"{"code":"reauthorize-error","args":{"advice":{"code":"advice-google-invalid-client"},"error":"invalid_client"}}"#
        );
        assert_eq!(Reason::from_stored(&json), r);

        let list = Reason::list([
            Reason::new("verify-off"),
            Reason::new("skew-ahead").arg("secs", 400),
        ])
        .unwrap();
        assert!(
            list.to_string()
                .starts_with("certificate verification is off: ")
                && list
                    .to_string()
                    .contains("; this device's clock is 400 s ahead"),
            "{list}"
        );
        assert!(
            list.render(&ja).contains("400秒進んで"),
            "{}",
            list.render(&ja)
        );
        assert_eq!(Reason::list([]), None);

        // Prose of an older version and codes of a newer one still show.
        assert_eq!(
            Reason::from_stored("some prose"),
            Reason::legacy("some prose")
        );
        assert_eq!(Reason::legacy("some prose").render(&ja), "some prose");
        assert!(Reason::new("newer").to_string().contains("newer"));
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
