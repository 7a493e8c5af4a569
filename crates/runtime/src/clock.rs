//! Time, injected: services ask a [`Clock`] rather than the system, so tests and demos can
//! control it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// How many times faster than real time the clock runs.
    fn speed(&self) -> f64 {
        1.0
    }

    /// The clock's time once `real` time has passed: leases, backoff and pauses are spans of
    /// real time (a provider recovers in real seconds, whatever the clock shows).
    fn after(&self, real: std::time::Duration) -> DateTime<Utc> {
        let simulated = real.mul_f64(self.speed().max(0.0));
        self.now() + chrono::Duration::from_std(simulated).unwrap_or(chrono::Duration::MAX)
    }
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

/// A simulated clock: it shows `start` at the real instant `epoch` and runs `speed` times
/// faster than real time. It reads the system's real time, so every process given the same
/// three values shows the same time, across restarts.
#[derive(Debug, Clone)]
pub struct SimulatedClock {
    start: DateTime<Utc>,
    epoch: DateTime<Utc>,
    speed: f64,
}

impl SimulatedClock {
    pub fn new(start: DateTime<Utc>, epoch: DateTime<Utc>, speed: f64) -> Self {
        Self {
            start,
            epoch,
            speed,
        }
    }

    /// The time at real instant `real`.
    pub fn at(&self, real: DateTime<Utc>) -> DateTime<Utc> {
        let elapsed = (real - self.epoch).to_std().unwrap_or_default();
        let simulated = chrono::Duration::from_std(elapsed.mul_f64(self.speed))
            .unwrap_or(chrono::Duration::MAX);
        self.start
            .checked_add_signed(simulated)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        self.at(Utc::now())
    }

    fn speed(&self) -> f64 {
        self.speed
    }
}

/// The clock `[runtime.clock]` asks for: the system's, or a simulated one.
pub fn from_settings(settings: &relance_config::ClockSettings) -> Arc<dyn Clock> {
    if settings.is_real() {
        return Arc::new(SystemClock);
    }
    let parse = |text: &str| {
        DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|at| at.with_timezone(&Utc))
    };
    let epoch = parse(&settings.epoch).unwrap_or_else(Utc::now);
    let start = parse(&settings.start).unwrap_or(epoch);
    tracing::warn!(speed = settings.speed, start = %start, epoch = %epoch, "The clock is simulated (runtime.clock): it is not the real time.");
    Arc::new(SimulatedClock::new(start, epoch, settings.speed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_runs_faster_than_real_time_from_its_epoch() {
        let epoch = Utc::now();
        let start = epoch - chrono::Duration::days(90);
        let clock = SimulatedClock::new(start, epoch, 3600.0);
        assert_eq!(clock.at(epoch), start);
        assert_eq!(
            clock.at(epoch + chrono::Duration::seconds(2)),
            start + chrono::Duration::hours(2)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(clock.now() - start >= chrono::Duration::seconds(60));
        assert_eq!(clock.speed(), 3600.0);
        let later = clock.after(std::time::Duration::from_secs(1)) - clock.now();
        assert!(later >= chrono::Duration::minutes(59), "{later}");
    }

    #[test]
    fn two_processes_given_the_same_settings_agree() {
        let settings = relance_config::ClockSettings {
            speed: 1000.0,
            start: "2026-09-01T00:00:00Z".into(),
            epoch: "2026-11-30T10:00:00Z".into(),
        };
        let first = from_settings(&settings);
        let second = from_settings(&settings);
        let gap = (first.now() - second.now()).num_seconds().abs();
        assert!(gap < 60, "{gap} simulated seconds apart");
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
