//! `GET /metrics`: the Prometheus text exposition. Loopback may scrape
//! freely (a Prometheus or an agent on the same host); from any other
//! address the scraper must send an API token (`Authorization: Bearer …`,
//! any role: every role may view the status). Before rendering, the gauges
//! that are facts about the store are read from it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::ApiCaller;
use super::errors::WebError;
use crate::queue::{JobState, JobStore as _};
use crate::roles::Permission;
use crate::store::accounts::TokenStatus;

/// Who may scrape without a token.
fn loopback(peer: IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

const TOKEN_NEEDED: &str = "Scraping /metrics from another host needs an API token: create one with `hikyaku admin api-token prometheus --role general-user` and give it to the scraper as its bearer token (Authorization: Bearer TOKEN).\n";

pub async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut parts: Parts,
) -> Result<Response, WebError> {
    if !loopback(peer.ip()) {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                TOKEN_NEEDED,
            )
                .into_response());
        }
        // Answered here, not as the pages' sign-in redirect: a scraper
        // follows no login form.
        match ApiCaller::from_request_parts(&mut parts, &state).await {
            Ok(caller) => caller.require(Permission::ViewStatus)?,
            Err(WebError::LoginRequired) => {
                return Ok((
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    TOKEN_NEEDED,
                )
                    .into_response());
            }
            Err(e) => return Err(e),
        }
    }
    let Some(_) = crate::metrics::install() else {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded in this process\n",
        )
            .into_response());
    };
    refresh_gauges(&state).await?;
    let text = crate::metrics::render().unwrap_or_default();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Sets the gauges that describe the store as it is now.
async fn refresh_gauges(state: &AppState) -> Result<(), WebError> {
    use crate::metrics::set_gauge;
    let now = state.clock.unix();
    let accounts = state.store.accounts().await?;
    crate::metrics::set_account_names(accounts.iter().map(|a| (a.id, a.name.clone())));
    for a in &accounts {
        let labels = [
            ("account", a.name.clone()),
            ("provider", a.provider.as_str().to_string()),
        ];
        if let Some(at) = a.access_expires_at {
            set_gauge("hikyaku_token_expiry_seconds", &labels, (at - now) as f64);
        }
        if let Some(at) = a.credential_expires_at {
            set_gauge(
                "hikyaku_credential_expiry_seconds",
                &labels,
                (at - now) as f64,
            );
        }
        for s in [
            TokenStatus::NotRegistered,
            TokenStatus::Authorizing,
            TokenStatus::Active,
            TokenStatus::Error,
        ] {
            let labels = [
                ("account", a.name.clone()),
                ("provider", a.provider.as_str().to_string()),
                ("status", s.as_str().to_string()),
            ];
            let on = if a.enabled && a.token_status == s {
                1.0
            } else {
                0.0
            };
            set_gauge("hikyaku_token_status", &labels, on);
        }
    }
    let counts = state.store.job_counts().await?;
    for s in JobState::ALL {
        let n = counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
        set_gauge(
            "hikyaku_jobs",
            &[("state", s.as_str().to_string())],
            n as f64,
        );
    }
    let oldest = state.store.oldest_waiting_since().await?;
    set_gauge(
        "hikyaku_queue_oldest_seconds",
        &[],
        oldest.map_or(0, |t| (now - t).max(0)) as f64,
    );
    set_gauge(
        "hikyaku_store_bytes",
        &[],
        state.store.size_bytes().await? as f64,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_scrapes_without_a_token() {
        for open in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert!(
                loopback(open.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{open}"
            );
        }
        for closed in [
            "192.0.2.2",
            "10.0.0.1",
            "fd00::2",
            "::ffff:192.0.2.2",
            "0.0.0.0",
        ] {
            assert!(
                !loopback(closed.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
                "{closed}"
            );
        }
    }
}
