//! The public side of the tracker: the pixel, tracked links, customer action pages and provider
//! webhooks, with security headers on every answer and a per-client rate limit on links and
//! pages. Operational endpoints are on the ops port only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use relance_channels::resilience::RateLimiter;
use relance_config::{LinkSettings, Settings};
use relance_links::{LinkAction, LinkClaims, LinkError, LinkSigner};
use relance_policy::PolicySet;
use relance_runtime::Clock;
use relance_tracking::classify::Thresholds;
use relance_tracking::webhooks::SendGridVerifier;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::metrics::TrackerMetrics;
use crate::pages::Pages;
use crate::{actions, interactions, webhooks};

/// What every public handler shares.
pub struct Public {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub links: LinkSettings,
    pub signer: LinkSigner,
    pub pages: Pages,
    pub policies: PolicySet,
    pub metrics: TrackerMetrics,
    pub relay: Arc<Notify>,
    pub thresholds: Thresholds,
    pub postmark_auth: Option<(String, SecretString)>,
    pub sendgrid: Option<SendGridVerifier>,
    pub clients: Mutex<HashMap<IpAddr, RateLimiter>>,
}

pub type AppState = Arc<Public>;

/// The public router.
pub fn router(state: AppState) -> Router {
    let links = Router::new()
        .route("/l/o/{token}", get(interactions::pixel))
        .route("/l/c/{token}", get(interactions::click))
        .route("/l/pay/{token}", get(actions::pay))
        .route(
            "/l/already-paid/{token}",
            get(actions::already_paid_page).post(actions::already_paid),
        )
        .route(
            "/l/dispute/{token}",
            get(actions::dispute_page).post(actions::dispute),
        )
        .route(
            "/l/promise/{token}",
            get(actions::promise_page).post(actions::promise),
        )
        .route(
            "/l/payment-plan/{token}",
            get(actions::payment_plan_page).post(actions::payment_plan),
        )
        .route("/l/renew/{token}", post(actions::renew))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit));
    Router::new()
        .merge(links)
        .route("/static/tracker.css", get(stylesheet))
        .route("/webhooks/postmark", post(webhooks::postmark))
        .route("/webhooks/sendgrid", post(webhooks::sendgrid))
        .fallback(not_found_fallback)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(middleware::from_fn(relance_telemetry::request_span))
        .with_state(state)
}

/// A plain 404 that says nothing about why (forged, tampered, unknown).
pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Not found\n",
    )
        .into_response()
}

async fn not_found_fallback() -> Response {
    not_found()
}

async fn stylesheet(State(state): State<AppState>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        state.pages.css.clone(),
    )
        .into_response()
}

/// The client's address: the connection's, or the one the trusted proxies report.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted_hops: u32) -> IpAddr {
    if trusted_hops == 0 {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    // Each trusted proxy appends the address it saw; the client is the one the outermost
    // trusted proxy saw.
    forwarded
        .len()
        .checked_sub(trusted_hops as usize)
        .and_then(|index| forwarded.get(index).copied())
        .unwrap_or(peer)
}

async fn rate_limit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let client = client_ip(
        request.headers(),
        peer.ip(),
        state.settings.tracker.trusted_proxy_hops,
    );
    let allowed = {
        let Ok(mut clients) = state.clients.lock() else {
            return next.run(request).await;
        };
        let now = Instant::now();
        if clients.len() > 10_000 {
            clients.retain(|_, limiter| !limiter.is_full(now));
        }
        let per_minute = state.settings.tracker.rate_limit_per_minute;
        clients
            .entry(client)
            .or_insert_with(|| {
                RateLimiter::new(f64::from(per_minute) / 60.0, (per_minute / 4).max(5), now)
            })
            .try_acquire(now)
    };
    if allowed {
        next.run(request).await
    } else {
        state.metrics.link("any", "rate_limited");
        let locale = state.pages.locale_for_accept_language(
            request
                .headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|value| value.to_str().ok()),
        );
        let text = state.pages.message(&locale, "too_many");
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response();
        if let Ok(language) = HeaderValue::from_str(&locale) {
            response
                .headers_mut()
                .insert(header::CONTENT_LANGUAGE, language);
        }
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        response
    }
}

async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    set(headers, "x-content-type-options", "nosniff");
    // Links carry tokens: never leak them to the sites customers go on to.
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-frame-options", "DENY");
    set(
        headers,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "x-robots-tag", "noindex, nofollow");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    let hsts = state.settings.tracker.hsts_max_age_seconds;
    if hsts > 0 {
        if let Ok(value) = HeaderValue::from_str(&format!("max-age={hsts}; includeSubDomains")) {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
        }
    }
    response
}

/// A token that verified, or verified but expired.
pub enum Checked {
    Valid(LinkClaims),
    Expired(LinkClaims),
}

impl Public {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The claims of `token` if it is genuine and for `action`; `None` for anything forged,
    /// tampered, signed by an unknown key, or meant for another action.
    pub fn check(&self, token: &str, action: LinkAction) -> Option<Checked> {
        match self.signer.verify(token, self.now().timestamp()) {
            Ok(claims) if claims.a == action => Some(Checked::Valid(claims)),
            Err(LinkError::Expired(claims)) if claims.a == action => {
                Some(Checked::Expired(*claims))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use axum::http::HeaderMap;

    #[test]
    fn the_client_is_what_the_outermost_trusted_proxy_saw() {
        let peer = "10.0.0.9"
            .parse()
            .unwrap_or_else(|_| std::net::IpAddr::from([0, 0, 0, 0]));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7"
                .parse()
                .unwrap_or_else(|_| axum::http::HeaderValue::from_static("")),
        );
        assert_eq!(
            client_ip(&headers, peer, 0),
            peer,
            "no trusted proxy: the connection"
        );
        assert_eq!(
            client_ip(&headers, peer, 1).to_string(),
            "203.0.113.7",
            "one proxy: the address it appended"
        );
        assert_eq!(client_ip(&headers, peer, 2).to_string(), "6.6.6.6");
        assert_eq!(
            client_ip(&headers, peer, 3),
            peer,
            "fewer entries than proxies: the connection"
        );
    }
}
