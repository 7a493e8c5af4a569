//! Money: integer minor units and a currency. Never floats.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest amount relance accepts in one event, 2^53 − 1 minor units: exact in every JSON
/// reader.
pub const MAX_AMOUNT_MINOR: i64 = 9_007_199_254_740_991;

/// An ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

/// Why a money value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency {0:?} is not three upper-case letters")]
    Currency(String),
    #[error("amount {0} is outside 0..={MAX_AMOUNT_MINOR}")]
    Amount(i64),
}

impl Currency {
    /// Parses an ISO 4217 code.
    ///
    /// # Errors
    /// [`MoneyError::Currency`] unless it is three upper-case ASCII letters.
    pub fn parse(code: impl Into<String>) -> Result<Self, MoneyError> {
        let code = code.into();
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code))
        } else {
            Err(MoneyError::Currency(code))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-negative amount of one currency, as events carry them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    /// An amount.
    ///
    /// # Errors
    /// [`MoneyError::Amount`] when negative or above [`MAX_AMOUNT_MINOR`].
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if (0..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
            Ok(Self {
                amount_minor,
                currency,
            })
        } else {
            Err(MoneyError::Amount(amount_minor))
        }
    }

    /// Zero of `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self {
            amount_minor: 0,
            currency,
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.amount_minor, self.currency)
    }
}

/// A signed sum of amounts, exact over any number of events (`i128`), for balances.
pub type SignedAmount = i128;
