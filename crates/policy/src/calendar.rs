//! Send windows and holidays, in the customer's time zone.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::model::SendWindow;

/// The UTC instant of a local date and time; in a daylight-saving gap, the first valid instant
/// after it.
pub(crate) fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let naive = NaiveDateTime::new(date, time);
    for minutes in [0i64, 30, 60, 90, 120] {
        let shifted = naive + chrono::Duration::minutes(minutes);
        if let Some(local) = tz.from_local_datetime(&shifted).earliest() {
            return local.with_timezone(&Utc);
        }
    }
    // No zone has a gap longer than two hours; treat the time as UTC rather than fail.
    Utc.from_utc_datetime(&naive)
}

/// The customer's date: the one function every service uses.
pub(crate) use relance_domain::calendar::local_date;

fn open_on(window: &SendWindow, holidays: &[NaiveDate], date: NaiveDate) -> bool {
    window
        .days
        .iter()
        .any(|day| day.weekday() == date.weekday())
        && !holidays.contains(&date)
}

/// The earliest instant at or after `at` inside the send window, on a day the window is open
/// and that is not a holiday, in time zone `tz`. `None` only if no such day exists within a
/// year (a policy whose holidays cover every open day).
pub fn next_send_time(
    at: DateTime<Utc>,
    tz: Tz,
    window: &SendWindow,
    holidays: &[NaiveDate],
) -> Option<DateTime<Utc>> {
    let local = at.with_timezone(&tz);
    let today = local.date_naive();
    for offset in 0..=366u64 {
        let date = today.checked_add_days(Days::new(offset))?;
        if !open_on(window, holidays, date) {
            continue;
        }
        let opens = local_instant(tz, date, window.start);
        let closes = local_instant(tz, date, window.end);
        if at < opens {
            return Some(opens);
        }
        if at < closes {
            return Some(at);
        }
    }
    None
}

/// Whether `at` is inside the send window on an open, non-holiday day.
pub fn is_sendable(at: DateTime<Utc>, tz: Tz, window: &SendWindow, holidays: &[NaiveDate]) -> bool {
    next_send_time(at, tz, window, holidays) == Some(at)
}
