//! Time, injected: services ask a [`Clock`] rather than the system, so tests and demos can
//! control it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock stopped at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    /// Moves the clock to `now`.
    pub fn set(&self, now: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A clock that runs `speed` times faster than real time from when it was created, for demos
/// and long scenarios: with speed 3600, an hour passes every second.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    started_real: std::time::Instant,
    started_at: DateTime<Utc>,
    speed: f64,
}

impl ScaledClock {
    /// A clock that shows `start` now and then runs at `speed`.
    pub fn new(start: DateTime<Utc>, speed: f64) -> Self {
        Self {
            started_real: std::time::Instant::now(),
            started_at: start,
            speed,
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.started_real.elapsed().mul_f64(self.speed);
        let elapsed = chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX);
        self.started_at
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_faster_than_real_time() {
        let start = Utc::now();
        let clock = ScaledClock::new(start, 3600.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let elapsed = clock.now() - start;
        assert!(elapsed >= chrono::Duration::seconds(60), "{elapsed}");
    }

    #[test]
    fn a_manual_clock_moves_only_when_set() {
        let start = Utc::now();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.set(start + chrono::Duration::days(3));
        assert_eq!(clock.now(), start + chrono::Duration::days(3));
    }
}
