//! Backoff with full jitter, token buckets and a circuit breaker. All are plain state machines
//! over an instant the caller passes in, so they are tested without sleeping. The sender holds a
//! breaker per provider and keeps each provider's [`SharedBucket`] in the database, so that every
//! replica draws on the same rate limit; the tracker limits clients with [`RateLimiter`].

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// A uniformly spread number in `[0, 1)`, from the standard library's random hasher keys.
pub fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Capped exponential backoff with full jitter: attempt `n` waits a random time in
/// `[0, min(max, initial · 2^(n-1))]`, and never less than what the provider asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of the wait after `attempt` failed attempts (1 for the first).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << exponent).min(self.max)
    }

    /// The wait before the next attempt, jittered, at least `hint` (capped at `max`... unless
    /// the provider's hint is longer: its word wins, up to an hour).
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        self.delay_with(attempt, hint, random_unit())
    }

    /// [`Backoff::delay`] with the random draw given, for tests.
    pub fn delay_with(&self, attempt: u32, hint: Option<Duration>, unit: f64) -> Duration {
        let jittered = self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0));
        match hint {
            Some(hint) => jittered.max(hint.min(Duration::from_secs(3600))),
            None => jittered,
        }
    }
}

/// A token bucket: `per_second` messages on average, bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `per_second` of 0 means unlimited.
    pub fn new(per_second: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second,
            burst,
            tokens: burst,
            updated: now,
        }
    }

    /// Takes one token if one is there now; `false` (and nothing taken) otherwise.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full at `now` (an idle client that can be forgotten).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.per_second <= 0.0 || self.tokens + elapsed * self.per_second >= self.burst
    }

    /// Takes `count` tokens; the wait before the messages may go (zero when they may go now).
    /// Tokens are reserved either way, so callers that wait stay in order.
    pub fn reserve(&mut self, count: u32, now: Instant) -> Duration {
        if self.per_second <= 0.0 {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
        self.tokens -= f64::from(count);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

/// What a [`CircuitBreaker`] allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Up to this many messages (one when half-open: the trial).
    Send(u32),
    /// Nothing before this long.
    Wait(Duration),
}

/// The state of a [`SharedBucket`]: tokens left when last drawn on, and when. Stored by the
/// caller (the sender keeps one row per provider), so replicas share one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    pub tokens: f64,
    /// Seconds since any fixed origin (the database's clock, shared by every replica).
    pub at_seconds: f64,
}

/// A token bucket whose state lives outside the process: `per_second` tokens a second, at most
/// `burst` saved up. Pure: [`SharedBucket::take`] turns a state into the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedBucket {
    pub per_second: f64,
    pub burst: f64,
}

/// What [`SharedBucket::take`] granted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    /// Tokens granted (whole messages).
    pub granted: u32,
    /// The state to store.
    pub state: BucketState,
    /// When none was granted, how long until one is there.
    pub wait: Duration,
}

impl SharedBucket {
    /// A bucket holding at most one second of messages (and at least one).
    pub fn for_rate(per_second: f64) -> Self {
        Self {
            per_second,
            burst: per_second.ceil().max(1.0),
        }
    }

    /// Whether the bucket limits anything (a rate of 0 means no limit of ours).
    pub fn is_limited(&self) -> bool {
        self.per_second > 0.0
    }

    /// Takes up to `want` whole tokens at `now_seconds` from `state` (`None`: a full bucket).
    /// Never grants more than the bucket holds, so messages never go faster than the rate
    /// beyond one burst.
    pub fn take(&self, state: Option<BucketState>, now_seconds: f64, want: u32) -> Draw {
        if !self.is_limited() {
            return Draw {
                granted: want,
                state: BucketState {
                    tokens: self.burst,
                    at_seconds: now_seconds,
                },
                wait: Duration::ZERO,
            };
        }
        let tokens = self.level(state, now_seconds);
        let granted = (tokens.floor().max(0.0) as u32).min(want);
        let left = tokens - f64::from(granted);
        let wait = if granted == 0 && want > 0 {
            Duration::from_secs_f64(((1.0 - left) / self.per_second).max(0.0))
        } else {
            Duration::ZERO
        };
        Draw {
            granted,
            state: BucketState {
                tokens: left,
                at_seconds: now_seconds,
            },
            wait,
        }
    }

    /// Returns `count` tokens that were taken and not used.
    pub fn give_back(&self, state: BucketState, now_seconds: f64, count: u32) -> BucketState {
        BucketState {
            tokens: (self.level(Some(state), now_seconds) + f64::from(count)).min(self.burst),
            at_seconds: now_seconds.max(state.at_seconds),
        }
    }

    /// Tokens in the bucket at `now_seconds` (a clock that went back adds nothing).
    fn level(&self, state: Option<BucketState>, now_seconds: f64) -> f64 {
        match state {
            None => self.burst,
            Some(state) => {
                let elapsed = (now_seconds - state.at_seconds).max(0.0);
                (state.tokens + elapsed * self.per_second).min(self.burst)
            }
        }
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are held until the instant; then one trial call goes through.
    Open,
    /// One trial call is out; its result closes or re-opens the breaker.
    HalfOpen,
}

/// Opens after `threshold` consecutive failures, for `cooldown`; then lets one trial through.
/// While open, messages wait: an outage delays reminders, it never drops them.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    open_until: Option<Instant>,
    trial_out: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            open_until: None,
            trial_out: false,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// How many messages may be sent now: `batch` when closed, exactly one trial message when
    /// half-open and no trial is out, none otherwise (with how long to wait). Asking takes
    /// nothing: [`CircuitBreaker::permit`] does, just before the call.
    pub fn allowance(&self, now: Instant, batch: u32) -> Allowance {
        match self.state(now) {
            BreakerState::Closed => Allowance::Send(batch),
            BreakerState::Open => {
                Allowance::Wait(self.open_until.map_or(Duration::ZERO, |until| until - now))
            }
            BreakerState::HalfOpen if self.trial_out => {
                Allowance::Wait(self.cooldown.min(Duration::from_secs(5)))
            }
            BreakerState::HalfOpen => Allowance::Send(batch.min(1)),
        }
    }

    /// `Ok` when a call may go now; `Err(wait)` with how long to hold it otherwise.
    ///
    /// # Errors
    /// The time until the breaker lets a call through.
    pub fn permit(&mut self, now: Instant) -> Result<(), Duration> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => Err(self.open_until.map_or(Duration::ZERO, |until| until - now)),
            BreakerState::HalfOpen if self.trial_out => {
                Err(self.cooldown.min(Duration::from_secs(5)))
            }
            BreakerState::HalfOpen => {
                self.trial_out = true;
                Ok(())
            }
        }
    }

    pub fn record_success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.trial_out = false;
    }

    /// A failure that says the provider is unwell (transient, ambiguous).
    pub fn record_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.trial_out || self.failures >= self.threshold {
            self.open_until = Some(now + self.cooldown);
            self.trial_out = false;
        }
    }

    /// Holds every call for `duration` (a configuration error: nothing will work until a person
    /// fixes it, so retrying at full speed only burns attempts).
    pub fn pause(&mut self, now: Instant, duration: Duration) {
        self.open_until = Some(now + duration);
        self.trial_out = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_respects_hints() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(backoff.ceiling(1), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(2), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(16));
        assert_eq!(backoff.ceiling(50), Duration::from_secs(60));
        assert_eq!(backoff.delay_with(3, None, 0.5), Duration::from_secs(2));
        assert_eq!(backoff.delay_with(3, None, 0.0), Duration::ZERO);
        assert_eq!(
            backoff.delay_with(1, Some(Duration::from_secs(30)), 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff.delay_with(1, Some(Duration::from_secs(86_400)), 0.5),
            Duration::from_secs(3600)
        );
        for attempt in 1..40 {
            let delay = backoff.delay(attempt, None);
            assert!(delay <= backoff.ceiling(attempt), "{attempt}: {delay:?}");
        }
    }

    #[test]
    fn the_rate_limiter_spaces_messages_after_a_burst() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10.0, 5, start);
        for _ in 0..5 {
            assert_eq!(limiter.reserve(1, start), Duration::ZERO);
        }
        assert_eq!(limiter.reserve(1, start), Duration::from_millis(100));
        assert_eq!(limiter.reserve(1, start), Duration::from_millis(200));
        // A second later, the bucket has refilled what was overdrawn and more.
        assert_eq!(
            limiter.reserve(1, start + Duration::from_secs(2)),
            Duration::ZERO
        );
        let mut client = RateLimiter::new(1.0, 2, start);
        assert!(client.try_acquire(start) && client.try_acquire(start));
        assert!(!client.try_acquire(start), "the burst is spent");
        assert!(!client.is_full(start));
        assert!(
            client.try_acquire(start + Duration::from_secs(1)),
            "a token a second"
        );
        assert!(client.is_full(start + Duration::from_secs(10)));
        let mut unlimited = RateLimiter::new(0.0, 1, start);
        assert_eq!(unlimited.reserve(1000, start), Duration::ZERO);
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_tries_once_after_cooldown() {
        let start = Instant::now();
        let cooldown = Duration::from_secs(30);
        let mut breaker = CircuitBreaker::new(3, cooldown);
        for _ in 0..2 {
            assert_eq!(breaker.permit(start), Ok(()));
            breaker.record_failure(start);
        }
        assert_eq!(breaker.state(start), BreakerState::Closed);
        breaker.record_failure(start);
        assert_eq!(breaker.state(start), BreakerState::Open);
        assert_eq!(
            breaker.permit(start + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        let later = start + cooldown;
        assert_eq!(breaker.state(later), BreakerState::HalfOpen);
        assert_eq!(breaker.permit(later), Ok(()));
        assert!(breaker.permit(later).is_err(), "one trial at a time");
        breaker.record_failure(later);
        assert_eq!(breaker.state(later), BreakerState::Open);
        let again = later + cooldown;
        assert_eq!(breaker.permit(again), Ok(()));
        breaker.record_success();
        assert_eq!(breaker.state(again), BreakerState::Closed);
        breaker.pause(again, Duration::from_secs(300));
        assert!(breaker.permit(again + Duration::from_secs(299)).is_err());
    }

    #[test]
    fn a_half_open_breaker_allows_exactly_one_trial_message() {
        let start = Instant::now();
        let cooldown = Duration::from_secs(30);
        let mut breaker = CircuitBreaker::new(1, cooldown);
        assert_eq!(breaker.allowance(start, 100), Allowance::Send(100));
        breaker.record_failure(start);
        assert_eq!(
            breaker.allowance(start, 100),
            Allowance::Wait(Duration::from_secs(30))
        );
        let later = start + cooldown;
        assert_eq!(breaker.allowance(later, 100), Allowance::Send(1));
        assert_eq!(breaker.permit(later), Ok(()));
        assert!(matches!(breaker.allowance(later, 100), Allowance::Wait(_)));
        breaker.record_success();
        assert_eq!(breaker.allowance(later, 100), Allowance::Send(100));
    }

    #[test]
    fn a_shared_bucket_grants_what_it_holds_and_says_when_the_next_token_comes() {
        let bucket = SharedBucket::for_rate(2.0);
        let first = bucket.take(None, 100.0, 30);
        assert_eq!(
            first.granted, 2,
            "a full bucket holds one second of messages"
        );
        let empty = bucket.take(Some(first.state), 100.0, 30);
        assert_eq!(empty.granted, 0);
        assert_eq!(empty.wait, Duration::from_millis(500));
        let refilled = bucket.take(Some(empty.state), 100.5, 30);
        assert_eq!(refilled.granted, 1);
        let returned = bucket.give_back(refilled.state, 100.5, 1);
        assert_eq!(bucket.take(Some(returned), 100.5, 30).granted, 1);
        let unlimited = SharedBucket::for_rate(0.0);
        assert_eq!(unlimited.take(None, 0.0, 500).granted, 500);
        let slow = SharedBucket::for_rate(0.1);
        let first = slow.take(None, 0.0, 5);
        assert_eq!(first.granted, 1);
        assert_eq!(
            slow.take(Some(first.state), 1.0, 5).wait,
            Duration::from_secs(9)
        );
    }
}
