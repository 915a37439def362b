//! Which account sends a message, decided before `250` (design.md
//! "Routing"): (1) the submitter's or allowlist entry's bound account;
//! (2) else the account whose send-as list matches the envelope sender, then
//! the From header; (3) else the default account. A message no rule routes,
//! or whose From the chosen account may not send as while the From rewrite
//! is off, is refused (`550 5.7.1`) and nothing is queued.

use crate::store::accounts::{Account, TokenStatus, send_as_match};

/// Why a message cannot be routed; the texts go into the `550` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    #[error(
        "no account routes this message: several accounts are enabled and none is the default — mark one as the default (E-mail Settings) or add the sender to an account's send-as list"
    )]
    NoRoute,
    #[error(
        "the account {account} may not send as {from}: add it to the account's send-as list, or switch delivery.rewrite_from on"
    )]
    NotSendAs { account: String, from: String },
}

/// The best send-as match for `address` among `accounts`: an exact entry
/// before an `@domain` entry, the lowest id first.
fn by_send_as<'a>(accounts: &[&'a Account], address: &str) -> Option<&'a Account> {
    let mut domain_match = None;
    for a in accounts {
        match send_as_match(&a.send_as, address) {
            Some(true) => return Some(a),
            Some(false) if domain_match.is_none() => domain_match = Some(*a),
            _ => {}
        }
    }
    domain_match
}

/// The default account: the one marked default; else the only enabled
/// one; else the only enabled one whose token is Active. `Ok(None)` while
/// no account is enabled at all (nothing is set up yet: the message waits
/// for one, as before accounts were many).
pub fn default_account(accounts: &[Account]) -> Result<Option<&Account>, Unroutable> {
    if let Some(a) = accounts.iter().find(|a| a.is_default) {
        return Ok(Some(a));
    }
    let enabled: Vec<&Account> = accounts.iter().filter(|a| a.enabled).collect();
    match enabled.as_slice() {
        [] => return Ok(None),
        [one] => return Ok(Some(one)),
        _ => {}
    }
    let active: Vec<&&Account> = enabled
        .iter()
        .filter(|a| a.token_status == TokenStatus::Active)
        .collect();
    match active.as_slice() {
        [one] => Ok(Some(**one)),
        _ => Err(Unroutable::NoRoute),
    }
}

/// Why a message of `size` bytes can never go out through the account it was
/// routed to (its transport's limit), or `None`.
pub fn too_large(accounts: &[Account], account: Option<i64>, size: usize) -> Option<String> {
    let a = accounts.iter().find(|a| Some(a.id) == account)?;
    let max = a.max_message_size()?;
    (size > max).then(|| {
        format!(
            "Message too large for account {} ({}): {size} bytes, at most {max}",
            a.name,
            a.transport.as_str()
        )
    })
}

/// Decides the account of a message. `bound`: the submitter's or allowlist
/// entry's account; `header_from`: the From header's address. `None`: no
/// account is set up yet (delivery takes the default when there is one).
pub fn route(
    accounts: &[Account],
    bound: Option<i64>,
    envelope_from: &str,
    header_from: Option<&str>,
    rewrite_from: bool,
) -> Result<Option<i64>, Unroutable> {
    let header_from = header_from.map(str::trim).filter(|f| !f.is_empty());
    let chosen = match bound.and_then(|id| accounts.iter().find(|a| a.id == id)) {
        Some(a) => Some(a),
        None => {
            let enabled: Vec<&Account> = accounts.iter().filter(|a| a.enabled).collect();
            let by_sender = Some(envelope_from.trim())
                .filter(|f| !f.is_empty())
                .and_then(|f| by_send_as(&enabled, f));
            match by_sender.or_else(|| header_from.and_then(|f| by_send_as(&enabled, f))) {
                Some(a) => Some(a),
                None => default_account(accounts)?,
            }
        }
    };
    let Some(a) = chosen else {
        return Ok(None);
    };
    // An account without a send-as list leaves the check to the provider
    // (as before lists existed); with one, a From outside it is either
    // rewritten at delivery or refused here.
    let from = header_from.unwrap_or(envelope_from).trim();
    if !rewrite_from && !a.send_as.is_empty() && !from.is_empty() && !a.may_send_as(from) {
        return Err(Unroutable::NotSendAs {
            account: a.name.clone(),
            from: from.to_string(),
        });
    }
    Ok(Some(a.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Provider;
    use crate::store::Store;
    use crate::store::accounts::{AccountSettings, CredentialKind, NewAccount};

    async fn accounts() -> (tempfile::TempDir, Vec<Account>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for (name, send_as) in [("scans", "scan@example.com"), ("erp", "@erp.example.com")] {
            let id = store
                .create_account(
                    &NewAccount {
                        provider: Provider::Microsoft,
                        name: name.into(),
                        cloud: crate::cloud::Cloud::Worldwide,
                        credential_kind: CredentialKind::Delegated,
                        mailbox: None,
                        enabled: true,
                    },
                    1,
                )
                .await
                .unwrap();
            let a = store.account(id).await.unwrap();
            store
                .update_account(
                    id,
                    &AccountSettings {
                        name: a.name,
                        cloud: a.cloud,
                        endpoint: a.endpoint,
                        smtp_host: a.smtp_host,
                        smtp_scope: None,
                        graph_host: None,
                        send_as: vec![send_as.into()],
                        rate_per_minute: None,
                        max_connections: None,
                        enabled: true,
                        transport: a.transport,
                        graph_large_messages: false,
                    },
                    1,
                )
                .await
                .unwrap();
        }
        let list = store.accounts().await.unwrap();
        (dir, list)
    }

    #[tokio::test]
    async fn the_rules_apply_in_order() {
        let (_dir, list) = accounts().await;
        let id = |name: &str| list.iter().find(|a| a.name == name).unwrap().id;
        let ms = id("microsoft");
        // (1) A binding wins over the send-as lists.
        assert_eq!(
            route(&list, Some(ms), "scan@example.com", None, true),
            Ok(Some(ms))
        );
        // (2) The envelope sender, then the From header; exact before domain.
        assert_eq!(
            route(
                &list,
                None,
                "scan@example.com",
                Some("x@erp.example.com"),
                true
            ),
            Ok(Some(id("scans")))
        );
        assert_eq!(
            route(
                &list,
                None,
                "device@lan",
                Some("Bill@ERP.example.com"),
                true
            ),
            Ok(Some(id("erp")))
        );
        // (3) No match and no default among several enabled accounts.
        assert_eq!(
            route(&list, None, "device@lan", Some("device@lan"), true),
            Err(Unroutable::NoRoute)
        );
        let mut with_default = list.clone();
        with_default
            .iter_mut()
            .find(|a| a.name == "erp")
            .unwrap()
            .is_default = true;
        assert_eq!(
            route(&with_default, None, "device@lan", None, true),
            Ok(Some(id("erp")))
        );
        // A From the chosen account may not send as: refused with the
        // rewrite off, kept for the rewrite otherwise.
        assert!(matches!(
            route(&with_default, None, "device@lan", Some("device@lan"), false),
            Err(Unroutable::NotSendAs { .. })
        ));
        assert_eq!(
            route(
                &list,
                Some(id("scans")),
                "scan@example.com",
                Some("boss@example.com"),
                true
            ),
            Ok(Some(id("scans")))
        );
        // Nothing enabled yet: the message waits for an account.
        let none: Vec<Account> = list
            .iter()
            .cloned()
            .map(|mut a| {
                a.enabled = false;
                a
            })
            .collect();
        assert_eq!(route(&none, None, "a@b.example", None, false), Ok(None));
    }

    #[tokio::test]
    async fn a_message_larger_than_the_accounts_transport_takes_is_refused() {
        let (_dir, mut list) = accounts().await;
        let id = list[0].id;
        let three_mb = 3 * 1024 * 1024;
        // SMTP takes what intake takes.
        assert_eq!(too_large(&list, Some(id), three_mb + 1), None);
        list[0].transport = crate::store::accounts::Transport::Graph;
        let why = too_large(&list, Some(id), three_mb + 1).expect("too large for Graph");
        assert!(
            why.contains("graph") && why.contains(&list[0].name),
            "{why}"
        );
        assert_eq!(too_large(&list, Some(id), 1024), None);
        // An app-only Graph account sends large messages through a draft.
        list[0].credential_kind = crate::store::accounts::CredentialKind::MicrosoftSecret;
        assert_eq!(too_large(&list, Some(id), 30 * 1024 * 1024), None);
        assert!(too_large(&list, Some(id), 36 * 1024 * 1024).is_some());
        list[0].transport = crate::store::accounts::Transport::GmailApi;
        assert_eq!(too_large(&list, Some(id), three_mb + 1), None);
        assert!(too_large(&list, Some(id), 36 * 1024 * 1024).is_some());
        // An unrouted message is decided later, not here.
        assert_eq!(too_large(&list, None, usize::MAX), None);
    }
}
