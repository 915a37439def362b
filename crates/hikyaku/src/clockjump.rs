//! What hikyaku does when the wall clock jumps (protocols.md §5): an
//! administrator or NTP stepped the system time, so expiry times computed from
//! the wall clock, TLS validity checks and the measured skew may all be off.
//!
//! The reaction heals by itself:
//! 1. log and audit the jump (actor `system`, action `clock_jump`, "+N s");
//! 2. refresh every active account's access token at once
//!    ([`TokenService::on_clock_jump`]);
//! 3. re-check the connection of every enabled account (new skew, TLS);
//! 4. an account whose refresh failed only temporarily keeps its token while
//!    the cached one is still valid (its deadline is monotonic, so the jump did
//!    not shorten it) — the status stays Active with the "unreachable" warning.
//!    If there is no valid access token left, the status turns to Error with a
//!    reason saying so; either way a background task retries with backoff and
//!    the status returns to Active by itself once the token endpoint answers.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, signed_secs};
use crate::i18n::Reason;
use crate::store::Store;
use crate::store::accounts::Account;
use crate::store::audit::Action;
use crate::tokens::status::endpoint_unreachable;
use crate::tokens::{TokenService, TokenStatus};

/// The token reason while no valid access token exists after a jump and the
/// token endpoint cannot be reached. Shown to administrators.
pub fn no_token_after_jump() -> Reason {
    Reason::new("no-token-after-jump")
}

/// First and largest pause between the healing retries.
const HEAL_FIRST: Duration = Duration::from_secs(2);
const HEAL_MAX: Duration = Duration::from_secs(60);

/// Reacts to wall-clock jumps; cheap to clone.
#[derive(Clone)]
pub struct JumpReaction {
    pub store: Store,
    pub tokens: TokenService,
    pub clock: SharedClock,
    pub shutdown: CancellationToken,
    /// Wakes delivery once an account is healed (its mail may be waiting).
    pub wake: Arc<dyn Fn() + Send + Sync>,
}

impl JumpReaction {
    /// Handles one jump of `secs` seconds (positive: forward).
    pub async fn handle(&self, secs: i64) {
        let detail = signed_secs(secs);
        tracing::warn!(
            jump = %detail,
            "the system clock jumped; refreshing tokens and re-checking connections"
        );
        let audited = Reason::new("audit-clock-jump").arg("secs", format!("{secs:+}"));
        if let Err(e) = self
            .store
            .audit(self.clock.unix(), "system", "", Action::ClockJump, &audited)
            .await
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        self.tokens.on_clock_jump().await;
        let accounts = self.accounts().await;
        for a in accounts.iter().filter(|a| a.enabled) {
            if let Err(e) = self.tokens.check_connection(a.id).await {
                tracing::warn!(account = a.id, error = %e, "clock jump: connection check failed");
            }
        }
        // After the checks: a check on a non-Active Microsoft account starts a
        // device authorization, which must not happen to an account we mark.
        for a in self.accounts().await {
            if !needs_healing(&a) {
                continue;
            }
            if self.tokens.access_token(a.id).await.is_err() {
                tracing::warn!(
                    account = a.id,
                    status = "error",
                    "clock jump: no valid access token and the token endpoint is unreachable"
                );
                if let Err(e) = self
                    .store
                    .set_token_status(
                        a.id,
                        TokenStatus::Error.as_str(),
                        Some(&no_token_after_jump()),
                        None,
                    )
                    .await
                {
                    tracing::warn!(account = a.id, error = %e, "cannot store the token status");
                }
            }
            let me = self.clone();
            tokio::spawn(async move { me.heal(a.id).await });
        }
    }

    async fn accounts(&self) -> Vec<Account> {
        match self.store.accounts().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "clock jump: cannot list accounts");
                Vec::new()
            }
        }
    }

    /// Retries the refresh of one account until it works, fails permanently,
    /// someone else changed the account (re-authorized, switched off), or shutdown.
    async fn heal(&self, id: i64) {
        let mut pause = HEAL_FIRST;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            match self.store.account(id).await {
                Ok(a) if needs_healing(&a) || is_marked(&a) => {}
                _ => return,
            }
            match self.tokens.force_refresh(id).await {
                Ok(()) => {
                    tracing::info!(
                        account = id,
                        status = "active",
                        "tokens refreshed after the clock jump"
                    );
                    (self.wake)();
                    return;
                }
                Err(e) if e.is_temporary() => {
                    pause = (pause * 2).min(HEAL_MAX);
                }
                Err(_) => return,
            }
        }
    }
}

/// Active with a refresh token, but the last refresh could not reach the endpoint.
fn needs_healing(a: &Account) -> bool {
    a.has_refresh_token
        && a.token_status == TokenStatus::Active
        && a.token_warning == Some(endpoint_unreachable())
}

/// Marked Error by [`JumpReaction::handle`] (not by a provider refusal).
fn is_marked(a: &Account) -> bool {
    a.has_refresh_token
        && a.token_status == TokenStatus::Error
        && a.token_reason == Some(no_token_after_jump())
}
