//! Texts with named holes, `"all recipients refused: {reply}"`: filled to
//! produce a job reply, and matched again to recover the arguments (the
//! Remote UI shows the stored English job replies in the page's language).
//! Account reasons and audit details are data ([`crate::i18n::Reason`]); job
//! replies are what still needs this, until they are data too.

/// `template` with each `{name}` replaced by its value.
pub fn fill(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// The values of the holes if `text` is `template` filled, else `None`.
/// Every hole but the last ends at the first occurrence of the literal after
/// it; the last takes everything up to the template's trailing literal.
pub fn captures<'t>(template: &'t str, text: &str) -> Option<Vec<(&'t str, String)>> {
    // Literal, hole, literal, hole, …, literal.
    let mut literals = Vec::new();
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}')? + open;
        literals.push(&rest[..open]);
        names.push(&rest[open + 1..close]);
        rest = &rest[close + 1..];
    }
    literals.push(rest);
    let mut text = text.strip_prefix(literals[0])?;
    if names.is_empty() {
        return text.is_empty().then(Vec::new);
    }
    let mut values = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let next = literals[i + 1];
        let last = i + 1 == names.len();
        let value = if last {
            text.strip_suffix(next)?
        } else {
            if next.is_empty() {
                return None;
            }
            let at = text.find(next)?;
            let v = &text[..at];
            text = &text[at + next.len()..];
            v
        };
        if value.is_empty() {
            return None;
        }
        values.push((*name, value.to_owned()));
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_matches_again() {
        let t = "connection to {target} was refused ({detail})";
        let text = fill(t, &[("target", "localhost:1"), ("detail", "a (b)")]);
        assert_eq!(text, "connection to localhost:1 was refused (a (b))");
        assert_eq!(
            captures(t, &text).unwrap(),
            [
                ("target", "localhost:1".to_owned()),
                ("detail", "a (b)".to_owned())
            ]
        );
        assert!(captures(t, "something else").is_none());
        assert!(captures("fixed text", "fixed text").unwrap().is_empty());
        assert!(captures("fixed text", "fixed text and more").is_none());
        assert!(captures("{a} is unreachable", "x is unreachable").is_some());
    }
}
