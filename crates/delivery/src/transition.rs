//! Where a delivery goes next: after an attempt's outcome, and after asking a provider about an
//! attempt whose outcome is in doubt. The dispatcher stores what these decide.

use std::time::Duration;

use crate::outcome::{Lookup, Outcome};
use crate::resilience::Backoff;

/// The sender's retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Counted attempts before a delivery is given up.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// After an ambiguous outcome, how long before asking the provider.
    pub reconcile_delay: Duration,
    /// How long a provider that refuses our configuration is left alone.
    pub config_pause: Duration,
    /// How long an attempt may stay in doubt (the provider cannot be asked) before a person
    /// is asked to settle it.
    pub escalate_after: Duration,
}

/// Why a delivery is given up for good (a metric label and the dead-letter reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GiveUpReason {
    /// The provider refused the message.
    ProviderRejected,
    /// Transient failures used up every attempt.
    AttemptsExhausted,
    /// An attempt's outcome cannot be established.
    OutcomeUnknown,
}

impl GiveUpReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::ProviderRejected => "provider_rejected",
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::OutcomeUnknown => "outcome_unknown",
        }
    }
}

/// What follows an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAttempt {
    /// The provider has the message.
    Sent { message_id: Option<String> },
    /// Try again after `after`; the attempt counted.
    Retry {
        after: Duration,
        code: String,
        message: String,
    },
    /// The attempt is in doubt: ask the provider after `after`, before anything is sent again.
    Reconcile { after: Duration, message: String },
    /// Our configuration is at fault: try again after `after`; the attempt does not count.
    Hold {
        after: Duration,
        code: String,
        message: String,
    },
    /// Given up: failed, with a task for a person.
    GiveUp {
        reason: GiveUpReason,
        code: String,
        message: String,
        /// The original command goes to the dead-letter topic (the message itself is at
        /// fault, not the provider's availability).
        dead_letter: bool,
        /// The provider says the recipient is inactive: suppress the address.
        suppress: bool,
    },
}

impl AfterAttempt {
    /// Whether the provider may still be retried for this delivery (the audit event's
    /// `retryable`).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Retry { .. } | Self::Reconcile { .. } | Self::Hold { .. } => true,
            Self::GiveUp { reason, .. } => *reason == GiveUpReason::AttemptsExhausted,
            Self::Sent { .. } => false,
        }
    }
}

/// What follows attempt number `attempt` (1 for the first) whose provider answered `outcome`;
/// `unit` is the random draw of the jitter, in `[0, 1)`.
pub fn after_attempt(
    outcome: Outcome,
    attempt: u32,
    policy: &RetryPolicy,
    unit: f64,
) -> AfterAttempt {
    match outcome {
        Outcome::Accepted { message_id } => AfterAttempt::Sent { message_id },
        Outcome::Rejected {
            code,
            message,
            recipient_inactive,
        } => AfterAttempt::GiveUp {
            reason: GiveUpReason::ProviderRejected,
            code,
            message,
            dead_letter: true,
            suppress: recipient_inactive,
        },
        Outcome::Transient {
            code,
            message,
            retry_after,
        } => {
            if attempt >= policy.max_attempts {
                AfterAttempt::GiveUp {
                    reason: GiveUpReason::AttemptsExhausted,
                    code,
                    message,
                    dead_letter: false,
                    suppress: false,
                }
            } else {
                AfterAttempt::Retry {
                    after: policy.backoff.delay_with(attempt, retry_after, unit),
                    code,
                    message,
                }
            }
        }
        Outcome::Ambiguous { message } => AfterAttempt::Reconcile {
            after: policy.reconcile_delay,
            message,
        },
        Outcome::Misconfigured { code, message } => AfterAttempt::Hold {
            after: policy.config_pause,
            code,
            message,
        },
    }
}

/// What follows asking a provider about an attempt in doubt for `in_doubt_for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterLookup {
    /// The provider has the message: it was sent, once.
    Sent { message_id: Option<String> },
    /// The provider has no such message: sending is safe.
    Send,
    /// The provider could not be asked; ask again after `after`.
    AskAgain { after: Duration, reason: String },
    /// Nobody can tell whether the customer got the message: a person settles it rather than
    /// risk a second one.
    HandToPerson { message: String },
}

/// What follows a reconciliation through `provider` that answered `lookup`.
pub fn after_lookup(
    lookup: Lookup,
    provider: &str,
    in_doubt_for: Duration,
    policy: &RetryPolicy,
) -> AfterLookup {
    match lookup {
        Lookup::Found { message_id } => AfterLookup::Sent { message_id },
        Lookup::NotFound => AfterLookup::Send,
        Lookup::Unsupported => AfterLookup::HandToPerson {
            message: format!(
                "An attempt through {provider} ended without an answer and {provider} cannot be searched by send id: the reminder may or may not have reached the customer. It is not sent again automatically; check with the customer or the provider's activity log."
            ),
        },
        Lookup::Unavailable(reason) if in_doubt_for >= policy.escalate_after => {
            AfterLookup::HandToPerson {
                message: format!(
                    "An attempt through {provider} ended without an answer, and {provider} could not be asked whether it has the message for {} minutes ({reason}). It is not sent again automatically; check the provider's activity log.",
                    in_doubt_for.as_secs() / 60
                ),
            }
        }
        Lookup::Unavailable(reason) => AfterLookup::AskAgain {
            after: policy.reconcile_delay.max(Duration::from_secs(1)),
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff: Backoff {
                initial: Duration::from_secs(30),
                max: Duration::from_secs(3600),
            },
            reconcile_delay: Duration::from_secs(30),
            config_pause: Duration::from_secs(300),
            escalate_after: Duration::from_secs(4 * 3600),
        }
    }

    fn transient() -> Outcome {
        Outcome::Transient {
            code: "500".into(),
            message: "boom".into(),
            retry_after: None,
        }
    }

    #[test]
    fn transient_failures_retry_until_the_last_attempt() {
        assert!(matches!(
            after_attempt(transient(), 2, &policy(), 0.5),
            AfterAttempt::Retry { after, .. } if after == Duration::from_secs(30)
        ));
        assert!(matches!(
            after_attempt(transient(), 3, &policy(), 0.5),
            AfterAttempt::GiveUp {
                reason: GiveUpReason::AttemptsExhausted,
                dead_letter: false,
                ..
            }
        ));
    }

    #[test]
    fn an_unavailable_lookup_is_asked_again_then_handed_to_a_person() {
        let unavailable = || Lookup::Unavailable("503".into());
        assert!(matches!(
            after_lookup(
                unavailable(),
                "postmark",
                Duration::from_secs(60),
                &policy()
            ),
            AfterLookup::AskAgain { .. }
        ));
        assert!(matches!(
            after_lookup(
                unavailable(),
                "postmark",
                Duration::from_secs(4 * 3600),
                &policy()
            ),
            AfterLookup::HandToPerson { .. }
        ));
        assert!(matches!(
            after_lookup(Lookup::Unsupported, "sendgrid", Duration::ZERO, &policy()),
            AfterLookup::HandToPerson { .. }
        ));
    }
}
