//! Per-IP and per-user rate limiting (contract §0.1 and §0.2), off by default.
//!
//! Why: one noisy client (a script stuck in a retry loop, a leaked key, a scanner) must not be
//! able to starve every other caller or drive the actors and the store flat out. Two token
//! buckets guard the API, each turned on by its own rate:
//!
//! - **per IP** ([`per_ip`]), before authentication and before route matching, so floods of
//!   unauthenticated or unknown-route requests are refused before they cost a key lookup or a
//!   JWT verification. Keyed by the socket peer; `X-Forwarded-For` (first hop) and `X-Real-IP`
//!   only with [`RateLimitConfig::trust_forwarded_headers`], since any client can send them.
//!   `/healthz`, `/readyz`, `/metrics` and `/ws/*` are never limited (probes, scrapers and
//!   long-lived terminals).
//! - **per user** ([`per_user`]), right after authentication and before sandbox-scoped key
//!   enforcement, keyed by the caller's `sub`, so many users behind one NAT each keep their own
//!   budget and one user cannot escape by spreading requests over addresses.
//!
//! A refused request gets 429, `Retry-After: <whole seconds ≥ 1>` and
//! `{"error":"rate_limited","retryAfter":N,"message":"too many requests; retry after N seconds"}`
//! ([`ApiError::RateLimited`]), and `agenttier_rate_limited_total{scope="ip"|"user"}` counts it.
//!
//! The buckets are `governor`'s GCRA limiter (a token bucket expressed as a theoretical arrival
//! time) with one state per key in a `DashMap`. A key whose bucket has refilled is
//! indistinguishable from an absent one, so such keys are swept (`retain_recent`) at most once
//! per [`SWEEP_INTERVAL`] by whichever request notices the sweep is due: memory is bounded by the
//! keys active within the last interval plus a bucket's refill time, with no background task.
//!
//! Every request costs one token. The contract's bulk costs (`POST /sandboxes/bulk` costs
//! `len(items)`, `POST /sandboxes/bulk-action` `len(ids)`) are not applied because those routes
//! do not exist yet; `Buckets::check` takes a cost for when they do.

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use agenttier_actors::metrics::{Metrics, ScopeLabels};

use crate::auth::Identity;
use crate::error::ApiError;

/// Requests a client IP may send at once before its rate applies (fixed by the contract).
pub const PER_IP_BURST: u32 = 30;
/// Requests a user may send at once before their rate applies (fixed by the contract).
pub const PER_USER_BURST: u32 = 100;
/// How often keys whose buckets have refilled are forgotten, at most.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// The slowest refill honoured: lower rates act as one request per day (governor's clock
/// arithmetic overflows on periods of centuries).
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// Settings of rate limiting (`--ratelimit-*`). The default turns both limits off.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RateLimitConfig {
    /// Sustained requests per second per client IP; `0` (or less) turns the per-IP limit off.
    pub per_ip_rate: f64,
    /// Sustained requests per second per authenticated `sub`; `0` (or less) turns it off.
    pub per_user_rate: f64,
    /// Take the client IP from `X-Forwarded-For` (first hop), else `X-Real-IP`, before the
    /// socket peer. Only behind a proxy that sets them: clients can forge both.
    pub trust_forwarded_headers: bool,
}

impl RateLimitConfig {
    /// Whether any limit is on (contract: either rate > 0).
    pub fn enabled(&self) -> bool {
        self.per_ip_rate > 0.0 || self.per_user_rate > 0.0
    }
}

/// The gateway's rate limits: cheap to clone, shared by every clone of the router. Built once
/// per [`crate::app`] call; with both rates off it holds nothing and every check passes.
#[derive(Clone, Default)]
pub struct RateLimits {
    inner: Option<Arc<Limits>>,
}

struct Limits {
    per_ip: Option<Buckets<IpAddr>>,
    per_user: Option<Buckets<String>>,
    trust_forwarded_headers: bool,
    /// Where `agenttier_rate_limited_total` lives.
    metrics: Arc<Metrics>,
}

impl RateLimits {
    /// Limits per `config`, counting refusals in `metrics`.
    pub fn new(config: &RateLimitConfig, metrics: Arc<Metrics>) -> Self {
        if !config.enabled() {
            return Self::default();
        }
        let limits = Limits {
            per_ip: Buckets::new(config.per_ip_rate, PER_IP_BURST, DefaultClock::default()),
            per_user: Buckets::new(
                config.per_user_rate,
                PER_USER_BURST,
                DefaultClock::default(),
            ),
            trust_forwarded_headers: config.trust_forwarded_headers,
            metrics,
        };
        Self {
            inner: Some(Arc::new(limits)),
        }
    }

    /// Takes one token from the bucket of the request's client IP, unless the route is exempt.
    fn check_ip(&self, request: &Request) -> Result<(), ApiError> {
        let Some(limits) = &self.inner else {
            return Ok(());
        };
        let Some(buckets) = &limits.per_ip else {
            return Ok(());
        };
        if is_exempt(request.uri().path()) {
            return Ok(());
        }
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        let Some(ip) = client_ip(request.headers(), peer, limits.trust_forwarded_headers) else {
            // Only a server started without connect info (or a test) gets here: failing open
            // keeps such an embedding working, and the warning says why nothing is limited.
            warn_no_peer();
            return Ok(());
        };
        buckets
            .check(&ip, 1)
            .map_err(|wait| limits.reject("ip", wait))
    }

    /// Takes `cost` tokens from the bucket of `sub`.
    fn check_user(&self, sub: &str, cost: u32) -> Result<(), ApiError> {
        let Some(limits) = &self.inner else {
            return Ok(());
        };
        let Some(buckets) = &limits.per_user else {
            return Ok(());
        };
        buckets
            .check(&sub.to_string(), cost)
            .map_err(|wait| limits.reject("user", wait))
    }
}

impl Limits {
    fn reject(&self, scope: &str, wait: Duration) -> ApiError {
        let retry_after = retry_after_secs(wait);
        self.metrics
            .rate_limited
            .get_or_create(&ScopeLabels {
                scope: scope.to_string(),
            })
            .inc();
        tracing::debug!(scope, retry_after, "rate limited");
        ApiError::RateLimited { retry_after }
    }
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("RateLimits(off)"),
            Some(limits) => f
                .debug_struct("RateLimits")
                .field("per_ip", &limits.per_ip)
                .field("per_user", &limits.per_user)
                .field("trust_forwarded_headers", &limits.trust_forwarded_headers)
                .finish(),
        }
    }
}

/// Middleware: the per-IP limit (contract §0.1, before route matching and authentication).
pub async fn per_ip(
    State(limits): State<RateLimits>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    limits.check_ip(&request)?;
    Ok(next.run(request).await)
}

/// Middleware: the per-user limit, keyed by the [`Identity`] that authentication put into the
/// request (contract §0.1: after authentication, before sandbox-scoped key enforcement).
pub async fn per_user(
    State(limits): State<RateLimits>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(identity) = request.extensions().get::<Identity>() {
        limits.check_user(&identity.sub, 1)?;
    }
    Ok(next.run(request).await)
}

/// Probes, the metrics scrape and terminal WebSockets are never limited per IP.
fn is_exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics") || path.starts_with("/ws/")
}

/// The client's address: the forwarded headers when trusted and parseable, else the socket
/// peer. IPv4-mapped IPv6 addresses count as their IPv4 address.
fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trust_forwarded: bool) -> Option<IpAddr> {
    let forwarded = || {
        let first_hop = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(parse_ip);
        first_hop.or_else(|| {
            headers
                .get("x-real-ip")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_ip)
        })
    };
    trust_forwarded
        .then(forwarded)
        .flatten()
        .or(peer)
        .map(|ip| ip.to_canonical())
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, or either with a port.
fn parse_ip(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    value
        .parse::<IpAddr>()
        .ok()
        .or_else(|| value.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

fn warn_no_peer() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            "per-IP rate limiting is on but a request has no peer address (the server was not \
             started with connect info); such requests are not limited per IP"
        );
    });
}

/// `Retry-After` in whole seconds, rounded up and never below 1.
fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One keyed token bucket per key, refilling at `rate` tokens per second up to `burst`.
struct Buckets<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    burst: NonZeroU32,
    /// The time one token takes to come back.
    period: Duration,
    /// The clock's reading when the buckets were made; sweeps are timed from it.
    origin: C::Instant,
    /// Nanoseconds after `origin` of the last sweep.
    last_sweep: AtomicU64,
}

impl<K: Hash + Eq + Clone, C: Clock> Buckets<K, C> {
    /// Buckets for `rate` (requests per second); `None` when the rate is not positive.
    fn new(rate: f64, burst: u32, clock: C) -> Option<Self> {
        if rate.is_nan() || rate <= 0.0 {
            return None;
        }
        let period = Duration::try_from_secs_f64(1.0 / rate)
            .unwrap_or(MAX_PERIOD)
            .clamp(Duration::from_nanos(1), MAX_PERIOD);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)?.allow_burst(burst);
        let origin = clock.now();
        Some(Self {
            limiter: RateLimiter::new(quota, DashMapStateStore::default(), clock),
            burst,
            period,
            origin,
            last_sweep: AtomicU64::new(0),
        })
    }

    /// Takes `cost` tokens (at least 1, at most the burst, so an oversized request waits for a
    /// full bucket rather than failing forever) from `key`'s bucket, or says how long to wait.
    fn check(&self, key: &K, cost: u32) -> Result<(), Duration> {
        self.sweep_if_due();
        let n = NonZeroU32::new(cost.min(self.burst.get())).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.limiter.clock().now())),
            // Unreachable with `n` capped at the burst; a full refill is the honest answer.
            Err(_) => Err(self.period.saturating_mul(self.burst.get())),
        }
    }

    /// Forgets keys whose buckets are full again, at most once per [`SWEEP_INTERVAL`]; the one
    /// request that wins the race does it.
    fn sweep_if_due(&self) {
        let now = nanos_u64(self.limiter.clock().now().duration_since(self.origin));
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < nanos_u64(SWEEP_INTERVAL.into())
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

fn nanos_u64(nanos: governor::nanos::Nanos) -> u64 {
    u64::try_from(Duration::from(nanos).as_nanos()).unwrap_or(u64::MAX)
}

impl<K: Hash + Eq + Clone, C: Clock> fmt::Debug for Buckets<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buckets")
            .field("period", &self.period)
            .field("burst", &self.burst)
            .finish()
    }
}

#[cfg(test)]
mod tests;
