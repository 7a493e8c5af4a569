//! What a provider answered: the outcome of an attempt, and what it knows of an earlier one.

use std::time::Duration;

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider took the message.
    Accepted { message_id: Option<String> },
    /// The provider refused this message for good (validation, inactive recipient): retrying
    /// cannot help.
    Rejected {
        code: String,
        message: String,
        /// The recipient is suppressed at the provider (hard bounce, complaint, opt-out).
        recipient_inactive: bool,
    },
    /// Worth trying again later (rate limit, outage, connection refused).
    Transient {
        code: String,
        message: String,
        /// The provider's hint of when to come back.
        retry_after: Option<Duration>,
    },
    /// The request may or may not have been taken (timeout after sending, garbled answer):
    /// reconcile before sending again.
    Ambiguous { message: String },
    /// Credentials, sender identity or account are wrong: every message would fail the same
    /// way, so the provider is paused and the message kept.
    Misconfigured { code: String, message: String },
}

impl Outcome {
    /// The outcome class, as metrics and the audit trail name it.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::Rejected { .. } => "permanent",
            Self::Transient { .. } => "transient",
            Self::Ambiguous { .. } => "ambiguous",
            Self::Misconfigured { .. } => "config",
        }
    }

    /// What the outcome says of the provider's health: `Some(true)` it answers, `Some(false)`
    /// it is unwell (the circuit breaker counts it), `None` it says nothing (our configuration
    /// is at fault).
    pub fn provider_healthy(&self) -> Option<bool> {
        match self {
            Self::Accepted { .. } | Self::Rejected { .. } => Some(true),
            Self::Transient { .. } | Self::Ambiguous { .. } => Some(false),
            Self::Misconfigured { .. } => None,
        }
    }
}

/// What a provider knows of an earlier attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The provider has a message with our send id.
    Found { message_id: Option<String> },
    /// It has none: sending again is safe.
    NotFound,
    /// The provider cannot be searched by our id.
    Unsupported,
    /// The search failed; try again later.
    Unavailable(String),
}
