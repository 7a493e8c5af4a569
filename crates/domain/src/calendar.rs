//! "Today", as the customer lives it: the one place where an instant becomes a date. Promises,
//! holds and pauses end at the end of a day in the customer's time zone, and every service
//! (the policy, the sender's guard, the ingestor, the admin API, the tracker) asks this module
//! which day that is.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::customer::CustomerFacts;

/// The zone of a customer whose profile (and time zone) has not arrived yet, for services that
/// know no policy. The scheduler uses the policy's default zone instead and stamps the zone it
/// planned in on every command, which the sender's guard uses: planner and guard always agree.
pub const UNKNOWN_ZONE: Tz = Tz::UTC;

/// The time zone named `name` (IANA), if it is one.
pub fn zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// The date at `instant` in `tz`.
pub fn local_date(tz: Tz, instant: DateTime<Utc>) -> NaiveDate {
    instant.with_timezone(&tz).date_naive()
}

/// The customer's time zone: their profile's, else `fallback` (the policy's default where one
/// is known; services that know no policy pass UTC).
pub fn customer_zone(customer: Option<&CustomerFacts>, fallback: Tz) -> Tz {
    customer
        .and_then(|facts| facts.profile.as_ref())
        .and_then(|profile| zone(&profile.value.timezone))
        .unwrap_or(fallback)
}

/// The customer's date at `instant`.
pub fn customer_today(
    customer: Option<&CustomerFacts>,
    fallback: Tz,
    instant: DateTime<Utc>,
) -> NaiveDate {
    local_date(customer_zone(customer, fallback), instant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn new_zealand_is_already_tomorrow() {
        let instant = Utc
            .with_ymd_and_hms(2026, 12, 5, 20, 0, 0)
            .single()
            .unwrap_or_default();
        let auckland = zone("Pacific/Auckland").unwrap_or(Tz::UTC);
        assert_eq!(
            local_date(auckland, instant),
            NaiveDate::from_ymd_opt(2026, 12, 6).unwrap_or_default()
        );
        assert_eq!(
            customer_today(None, Tz::UTC, instant),
            NaiveDate::from_ymd_opt(2026, 12, 5).unwrap_or_default()
        );
    }
}
