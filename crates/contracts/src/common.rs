//! Values shared by many events: identifiers, money, dates, contact details, dunning vocabulary.
//!
//! Every constrained string is a newtype that validates on construction and on deserialization
//! with the same rule as `proto/schemas/common.v1.json`, so a value of these types is always one
//! the contract accepts.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest integer a JSON number carries exactly in every language (2^53 − 1). Money amounts
/// and revisions stay below it so that a JavaScript consumer reads the same number.
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Why a value does not meet its contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct InvalidValue {
    /// The kind of value, for example `currency`.
    pub kind: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidValue {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `value` against the contract's rule for this kind of value.
            ///
            /// # Errors
            /// [`InvalidValue`] naming the rule that `value` breaks.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&value).map_err(|reason| InvalidValue::new($kind, reason))?;
                Ok(Self(value))
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn char_count_between(value: &str, min: usize, max: usize) -> Result<(), String> {
    let count = value.chars().count();
    if count < min {
        return Err(format!("must have at least {min} characters, has {count}"));
    }
    if count > max {
        return Err(format!("must have at most {max} characters, has {count}"));
    }
    Ok(())
}

fn all_bytes(value: &str, what: &str, accept: impl Fn(u8) -> bool) -> Result<(), String> {
    match value.bytes().find(|byte| !accept(*byte)) {
        Some(byte) => Err(format!("{what}; found {:?}", char::from(byte))),
        None => Ok(()),
    }
}

string_newtype!(
    /// An identifier assigned by the system that owns the object: 1 to 128 printable ASCII
    /// characters, no spaces.
    Id,
    "id",
    |value| {
        char_count_between(value, 1, 128)?;
        all_bytes(value, "must be printable ASCII without spaces", |b| {
            (0x21..=0x7e).contains(&b)
        })
    }
);

string_newtype!(
    /// A machine-readable snake_case code (segment, step, template, reason), 1 to 64 characters.
    Code,
    "code",
    |value| {
        char_count_between(value, 1, 64)?;
        if !value.as_bytes()[0].is_ascii_lowercase() {
            return Err("must start with a lower-case letter".into());
        }
        all_bytes(value, "must be lower-case letters, digits and _", |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
        })
    }
);

string_newtype!(
    /// A person's or company's name, 1 to 200 characters.
    Name,
    "name",
    |value| char_count_between(value, 1, 200)
);

string_newtype!(
    /// Free text meant for people, at most 2000 characters.
    Text,
    "text",
    |value| char_count_between(value, 0, 2000)
);

string_newtype!(
    /// A short reference people quote: an invoice number, an order reference, a payment label;
    /// 1 to 128 characters.
    Reference,
    "reference",
    |value| char_count_between(value, 1, 128)
);

string_newtype!(
    /// An invoice number as printed on the invoice: 1 to 64 characters.
    InvoiceNumber,
    "invoice number",
    |value| char_count_between(value, 1, 64)
);

string_newtype!(
    /// An ISO 4217 alphabetic currency code (`EUR`).
    Currency,
    "currency",
    |value| {
        if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(())
        } else {
            Err("must be three upper-case letters (ISO 4217)".into())
        }
    }
);

string_newtype!(
    /// An ISO 3166-1 alpha-2 country code (`FR`).
    CountryCode,
    "country",
    |value| {
        if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(())
        } else {
            Err("must be two upper-case letters (ISO 3166-1 alpha-2)".into())
        }
    }
);

string_newtype!(
    /// A BCP 47 language tag: a language, optionally a script and a region (`fr`, `fr-FR`,
    /// `zh-Hans-CN`).
    Locale,
    "locale",
    check_locale
);

fn check_locale(value: &str) -> Result<(), String> {
    let invalid = || "must be a BCP 47 tag such as fr, fr-FR or zh-Hans-CN".to_string();
    let mut parts = value.split('-');
    let language = parts.next().unwrap_or_default();
    if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(invalid());
    }
    let mut rest: Vec<&str> = parts.collect();
    if let Some(script) = rest.first() {
        let bytes = script.as_bytes();
        if bytes.len() == 4
            && bytes[0].is_ascii_uppercase()
            && bytes[1..].iter().all(u8::is_ascii_lowercase)
        {
            rest.remove(0);
        }
    }
    match rest.as_slice() {
        [] => Ok(()),
        [region]
            if (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase()))
                || (region.len() == 3 && region.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Ok(())
        }
        _ => Err(invalid()),
    }
}

impl Locale {
    /// The language subtag (`fr` for `fr-FR`).
    pub fn language(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
}

string_newtype!(
    /// An IANA time zone name (`Europe/Paris`).
    TimeZoneName,
    "timezone",
    |value| {
        char_count_between(value, 1, 64)?;
        let well_formed = value.split('/').enumerate().all(|(index, part)| {
            !part.is_empty()
                && (index > 0 || part.as_bytes()[0].is_ascii_alphabetic())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
        });
        if well_formed {
            Ok(())
        } else {
            Err("must be an IANA time zone name such as Europe/Paris".into())
        }
    }
);

string_newtype!(
    /// An email address (at most 254 characters, one `@`, no spaces).
    Email,
    "email",
    |value| {
        char_count_between(value, 3, 254)?;
        let Some((local, domain)) = value.split_once('@') else {
            return Err("must contain @".into());
        };
        let domain_ok = !domain.is_empty()
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b)
            });
        if local_ok && domain_ok {
            Ok(())
        } else {
            Err("must be an address such as name@example.com".into())
        }
    }
);

string_newtype!(
    /// A phone number in E.164 form (`+33612345678`).
    Phone,
    "phone",
    |value| {
        let digits = value.strip_prefix('+').unwrap_or_default();
        if (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(())
        } else {
            Err("must be an E.164 number such as +33612345678".into())
        }
    }
);

string_newtype!(
    /// An absolute http(s) URL, at most 2048 characters.
    Url,
    "url",
    |value| {
        char_count_between(value, 1, 2048)?;
        let rest = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"))
            .ok_or_else(|| "must start with https:// or http://".to_string())?;
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if host_end == 0 {
            return Err("must have a host".into());
        }
        all_bytes(value, "must not contain spaces or control characters", |b| {
            b > 0x20 && b != 0x7f
        })
    }
);

/// An amount of money: integer minor units of its currency and the currency. Never negative;
/// the event type says whether it adds or removes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MoneyWire")]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyWire {
    amount_minor: i64,
    currency: Currency,
}

impl TryFrom<MoneyWire> for Money {
    type Error = InvalidValue;
    fn try_from(wire: MoneyWire) -> Result<Self, Self::Error> {
        Money::new(wire.amount_minor, wire.currency)
    }
}

impl Money {
    /// An amount of `amount_minor` minor units of `currency`.
    ///
    /// # Errors
    /// [`InvalidValue`] when the amount is negative or above [`MAX_SAFE_INTEGER`].
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, InvalidValue> {
        if !(0..=MAX_SAFE_INTEGER).contains(&amount_minor) {
            return Err(InvalidValue::new(
                "money",
                format!("amount_minor must be between 0 and {MAX_SAFE_INTEGER}, is {amount_minor}"),
            ));
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }

    /// The amount in minor units (cents for EUR).
    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    /// The currency.
    pub fn currency(&self) -> &Currency {
        &self.currency
    }
}

/// A revision of an object in its source system; it increases with every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Revision(i64);

impl Revision {
    /// Revision `value`.
    ///
    /// # Errors
    /// [`InvalidValue`] unless `1 <= value <= MAX_SAFE_INTEGER`.
    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        if (1..=MAX_SAFE_INTEGER).contains(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidValue::new(
                "revision",
                format!("must be between 1 and {MAX_SAFE_INTEGER}, is {value}"),
            ))
        }
    }

    /// The revision number.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Revision {
    type Error = InvalidValue;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Revision> for i64 {
    fn from(value: Revision) -> Self {
        value.0
    }
}

/// A contact for one invoice, when it differs from the customer's collection contact.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct InvoiceContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
}

/// Who a message is addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Name>,
    /// The customer's legal name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
}

/// How a reminder reaches the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    PhoneCall,
    Letter,
    FormalNotice,
}

/// The tone of a dunning step: progressively firmer, always respectful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Friendly,
    Firm,
    Final,
}

/// What starts a dunning sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum StepTrigger {
    /// Steps counted in days from the invoice's due date.
    DueDate,
    /// Steps counted in days from a failed (recurring) payment.
    PaymentFailed,
}

/// The dunning step a reminder belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct StepRef {
    pub id: Code,
    #[cfg_attr(test, proptest(strategy = "0u32..=1000"))]
    pub index: u32,
    pub trigger: StepTrigger,
    /// Days from the trigger date: negative before it, 0 on it.
    #[cfg_attr(test, proptest(strategy = "-365i32..=3650"))]
    pub offset_days: i32,
    pub tone: Tone,
}

/// The template a message is rendered with and its A/B test variant, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    pub id: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Code>,
}

/// Whether an open or a click was made by a person or by software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum InteractionClassification {
    Human,
    Machine,
}

/// The kind of payment method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethodKind {
    Card,
    DirectDebit,
    BankTransfer,
    Wallet,
    Other,
}

/// A payment method as far as the customer recognises it, never its full number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(deny_unknown_fields)]
pub struct PaymentMethod {
    pub kind: PaymentMethodKind,
    /// Card brand or scheme, for example `visa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, proptest(strategy = "proptest::option::of(\"[a-z_]{1,32}\")"))]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, proptest(strategy = "proptest::option::of(\"[0-9]{4}\")"))]
    pub last4: Option<String>,
    /// Card expiry month, `YYYY-MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        test,
        proptest(strategy = "proptest::option::of(\"20[0-9]{2}-(0[1-9]|1[0-2])\")")
    )]
    pub expiry: Option<String>,
}
