//! A reason as HTML in which the text it quotes (a server's reply, a name,
//! English detail without a message of its own) is marked `lang="en"`, so
//! that browsers, screen readers and checks can tell it from the page's own
//! words.

use crate::i18n::{Arg, Reason};
use crate::web::i18n::Tr;

/// Marks of a quoted argument inside the rendered text (private use
/// characters: no message and no server reply carries them).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// Text worth marking: it has Latin letters and is not a bare code such as
/// `true`, `starttls` or `discarded`, which messages select on and must
/// receive as it is.
fn is_quoted(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_alphabetic())
        && !text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn mark(r: &Reason, quoted: &mut Vec<String>) -> Reason {
    let mut out = Reason::new(&r.code);
    for (name, arg) in &r.args {
        let arg = match arg {
            Arg::Text(t) if is_quoted(t) => {
                quoted.push(t.clone());
                Arg::Text(format!("{OPEN}{}{CLOSE}", quoted.len() - 1))
            }
            Arg::Text(t) => Arg::Text(t.clone()),
            Arg::Reason(inner) => Arg::Reason(mark(inner, quoted)),
        };
        out.args.insert(name.clone(), arg);
    }
    out
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Plain text made safe to insert into a page.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape(text, &mut out);
    out
}

/// `r` in the language of `tr`, escaped, with its quoted arguments in
/// `<span lang="en">`. Safe to insert into a page as it is.
pub fn reason_html(r: &Reason, tr: &Tr) -> String {
    let mut quoted = Vec::new();
    let text = mark(r, &mut quoted).render(tr);
    let mut html = String::with_capacity(text.len() + 32);
    let mut rest = text.as_str();
    while let Some(start) = rest.find(OPEN) {
        escape(&rest[..start], &mut html);
        let after = &rest[start + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else {
            escape(after, &mut html);
            return html;
        };
        let quote = after[..end]
            .parse::<usize>()
            .ok()
            .and_then(|i| quoted.get(i));
        match quote {
            Some(q) => {
                html.push_str("<span lang=\"en\">");
                escape(q, &mut html);
                html.push_str("</span>");
            }
            None => escape(&after[..end], &mut html),
        }
        rest = &after[end + CLOSE.len_utf8()..];
    }
    escape(rest, &mut html);
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Locale;

    #[test]
    fn quoted_text_is_marked_and_everything_is_escaped() {
        let r = Reason::new("job-then")
            .nested(
                "first",
                Reason::new("upstream").arg("reply", "550 <nobody@x> & co"),
            )
            .nested("then", Reason::new("job-wait-switched-off"));
        let html = reason_html(&r, &Tr::new(Locale::Ja));
        assert!(
            html.contains("<span lang=\"en\">550 &lt;nobody@x&gt; &amp; co</span>"),
            "{html}"
        );
        assert!(
            !html.contains('\u{E000}') && !html.contains("<nobody"),
            "{html}"
        );
    }

    #[test]
    fn codes_that_messages_select_on_are_left_alone() {
        let r = Reason::new("audit-basic-settings")
            .arg("provider", "microsoft")
            .arg("enabled", "false")
            .arg("verify_cert", "true")
            .arg("verify_cn", "false")
            .arg("endpoint", "https://login.example/x")
            .arg("client_id", "id")
            .arg("secret", "")
            .arg("tokens", "discarded");
        let en = reason_html(&r, &Tr::new(Locale::En));
        assert!(en.contains("(tokens discarded)"), "{en}");
        let ja = reason_html(&r, &Tr::new(Locale::Ja));
        assert!(
            ja.contains("(トークンを破棄)") && ja.contains("使用=OFF"),
            "{ja}"
        );
        assert!(
            ja.contains("<span lang=\"en\">https://login.example/x</span>"),
            "{ja}"
        );
    }
}
