//! Which reminders a payment is credited to. A reminder "touched" a payment when it was sent
//! about the paid invoice within the window before the payment. Models:
//!
//! - `last_touch` (the default): the whole payment to the last reminder before it;
//! - `first_touch`: to the first one in the window;
//! - `linear`: shared equally, the remainder of the division going to the last reminder, so
//!   credits always add up to the payment exactly (integer minor units, never floats).
//!
//! Reminders sent after the payment, or before the window, are not credited.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// How a payment is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    LastTouch,
    FirstTouch,
    Linear,
}

impl Model {
    pub fn code(self) -> &'static str {
        match self {
            Self::LastTouch => "last_touch",
            Self::FirstTouch => "first_touch",
            Self::Linear => "linear",
        }
    }
}

/// A reminder sent about the paid invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub reminder_id: Uuid,
    pub sent_at: DateTime<Utc>,
}

/// A reminder's share of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    pub reminder_id: Uuid,
    pub sent_at: DateTime<Utc>,
    pub amount_minor: i64,
}

/// Credits `amount_minor` paid at `paid_at` to `touches` under `model` and the window.
pub fn attribute(
    amount_minor: i64,
    paid_at: DateTime<Utc>,
    touches: &[Touch],
    model: Model,
    window: Duration,
) -> Vec<Credit> {
    let mut eligible: Vec<Touch> = touches
        .iter()
        .copied()
        .filter(|touch| touch.sent_at <= paid_at && touch.sent_at >= paid_at - window)
        .collect();
    // Earliest first; the reminder id breaks ties so the result does not depend on input order.
    eligible.sort_by_key(|touch| (touch.sent_at, touch.reminder_id));
    eligible.dedup_by_key(|touch| touch.reminder_id);
    let credit = |touch: &Touch, amount_minor| Credit {
        reminder_id: touch.reminder_id,
        sent_at: touch.sent_at,
        amount_minor,
    };
    match model {
        Model::LastTouch => eligible
            .last()
            .map(|touch| vec![credit(touch, amount_minor)])
            .unwrap_or_default(),
        Model::FirstTouch => eligible
            .first()
            .map(|touch| vec![credit(touch, amount_minor)])
            .unwrap_or_default(),
        Model::Linear => {
            let count = eligible.len() as i64;
            if count == 0 {
                return Vec::new();
            }
            let share = amount_minor / count;
            let remainder = amount_minor - share * count;
            eligible
                .iter()
                .enumerate()
                .map(|(index, touch)| {
                    let last = index as i64 == count - 1;
                    credit(touch, if last { share + remainder } else { share })
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 9, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn touch(id: u128, day: u32) -> Touch {
        Touch {
            reminder_id: Uuid::from_u128(id),
            sent_at: at(day),
        }
    }

    #[test]
    fn each_model_credits_as_documented() {
        let touches = [touch(1, 2), touch(2, 9), touch(3, 16), touch(4, 28)];
        let window = Duration::days(30);
        let paid = at(20);
        let last = attribute(10_000, paid, &touches, Model::LastTouch, window);
        assert_eq!(
            last,
            vec![Credit {
                reminder_id: Uuid::from_u128(3),
                sent_at: at(16),
                amount_minor: 10_000
            }]
        );
        let first = attribute(10_000, paid, &touches, Model::FirstTouch, window);
        assert_eq!(first[0].reminder_id, Uuid::from_u128(1));
        let linear = attribute(10_000, paid, &touches, Model::Linear, window);
        assert_eq!(
            linear
                .iter()
                .map(|credit| credit.amount_minor)
                .collect::<Vec<_>>(),
            vec![3333, 3333, 3334]
        );
        // A short window leaves the older reminders out.
        let recent = attribute(10_000, paid, &touches, Model::FirstTouch, Duration::days(7));
        assert_eq!(recent[0].reminder_id, Uuid::from_u128(3));
        // Nothing before the payment: nothing credited.
        assert!(attribute(10_000, at(1), &touches, Model::LastTouch, window).is_empty());
    }

    proptest! {
        #[test]
        fn credits_add_up_to_the_payment_and_only_reminders_in_the_window_get_any(
            amount in 0i64..10_000_000,
            days in proptest::collection::vec(1u32..=28, 0..8),
            paid_day in 1u32..=28,
            window_days in 0i64..40,
            model in prop_oneof![Just(Model::LastTouch), Just(Model::FirstTouch), Just(Model::Linear)],
        ) {
            let touches: Vec<Touch> = days.iter().enumerate().map(|(index, day)| touch(index as u128, *day)).collect();
            let paid = at(paid_day);
            let window = Duration::days(window_days);
            let credits = attribute(amount, paid, &touches, model, window);
            let eligible = touches.iter().filter(|touch| touch.sent_at <= paid && touch.sent_at >= paid - window).count();
            if eligible == 0 {
                prop_assert!(credits.is_empty());
            } else {
                prop_assert_eq!(credits.iter().map(|credit| credit.amount_minor).sum::<i64>(), amount);
                prop_assert!(credits.iter().all(|credit| credit.amount_minor >= 0));
                prop_assert!(credits.iter().all(|credit| credit.sent_at <= paid && credit.sent_at >= paid - window));
                if model != Model::Linear {
                    prop_assert_eq!(credits.len(), 1);
                }
            }
        }
    }
}
