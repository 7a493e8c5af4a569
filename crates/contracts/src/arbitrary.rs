//! Strategies that generate valid contract values, for the property tests.

use chrono::{DateTime, NaiveDate, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use crate::common::*;

macro_rules! arbitrary_from_regex {
    ($type:ty, $regex:expr) => {
        impl Arbitrary for $type {
            type Parameters = ();
            type Strategy = BoxedStrategy<Self>;
            fn arbitrary_with((): ()) -> Self::Strategy {
                proptest::string::string_regex($regex)
                    .expect("strategy regex compiles")
                    .prop_filter_map("generated value meets the contract", |text| {
                        <$type>::parse(text).ok()
                    })
                    .boxed()
            }
        }
    };
}

arbitrary_from_regex!(Id, "[!-~]{1,40}");
arbitrary_from_regex!(Code, "[a-z][a-z0-9_]{0,30}");
arbitrary_from_regex!(Name, "[^\\p{C}]{1,40}");
arbitrary_from_regex!(Text, "[^\\p{C}]{0,80}");
arbitrary_from_regex!(Reference, "[^\\p{C}]{1,40}");
arbitrary_from_regex!(InvoiceNumber, "[A-Z0-9/-]{1,20}");
arbitrary_from_regex!(Currency, "[A-Z]{3}");
arbitrary_from_regex!(CountryCode, "[A-Z]{2}");
arbitrary_from_regex!(Locale, "[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?");
arbitrary_from_regex!(
    TimeZoneName,
    "(UTC|Europe/Paris|America/New_York|America/Argentina/Buenos_Aires|Etc/GMT\\+5|Asia/Tokyo)"
);
arbitrary_from_regex!(
    Email,
    "[a-z0-9]([a-z0-9_+-]{0,15}[a-z0-9])?@[a-z0-9]{1,15}\\.[a-z]{2,6}"
);
arbitrary_from_regex!(Phone, "\\+[1-9][0-9]{6,14}");
arbitrary_from_regex!(
    Url,
    "https://[a-z]{1,15}\\.example(/[a-zA-Z0-9_-]{1,10}){0,3}"
);

impl Arbitrary for Money {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        (0..=MAX_SAFE_INTEGER, any::<Currency>())
            .prop_map(|(amount, currency)| {
                Money::new(amount, currency).expect("amount is within the contract's range")
            })
            .boxed()
    }
}

impl Arbitrary for Revision {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;
    fn arbitrary_with((): ()) -> Self::Strategy {
        (1..=MAX_SAFE_INTEGER)
            .prop_map(|value| Revision::new(value).expect("value is within the contract's range"))
            .boxed()
    }
}

/// Dates between 1970 and about 2134.
pub fn date() -> impl Strategy<Value = NaiveDate> {
    (0i64..60_000).prop_map(|days| {
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 exists")
            + chrono::Days::new(days as u64)
    })
}

/// Instants between 1970 and 2096, with no, millisecond, microsecond or nanosecond fractions.
pub fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let nanos = prop_oneof![
        Just(0u32),
        (0u32..1000).prop_map(|ms| ms * 1_000_000),
        (0u32..1_000_000).prop_map(|us| us * 1000),
        0u32..1_000_000_000,
    ];
    (0i64..4_000_000_000, nanos).prop_map(|(seconds, nanos)| {
        DateTime::from_timestamp(seconds, nanos).expect("in chrono's range")
    })
}

pub fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

pub fn idempotency_key() -> impl Strategy<Value = String> {
    "[a-z0-9_:.-]{1,80}"
}

pub fn invoice_ids() -> impl Strategy<Value = Vec<Id>> {
    proptest::collection::btree_set(any::<Id>(), 1..5).prop_map(|ids| ids.into_iter().collect())
}

pub fn tags() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z][a-z0-9-]{0,20}", 0..6)
        .prop_map(|tags| tags.into_iter().collect())
}
