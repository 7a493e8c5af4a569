//! Delivery channels: how a rendered reminder reaches a customer.
//!
//! Each provider sits behind [`EmailProvider`] or [`SmsProvider`] and answers every attempt with
//! an [`Outcome`] in one of five classes (accepted, permanent, transient, ambiguous, config), so
//! the sender decides retries, suppressions and pauses in one place, whatever the provider.
//! None of the providers accepts an idempotency key; those that can be searched by our send id
//! implement [`EmailProvider::lookup`], which the sender uses to reconcile an attempt whose
//! outcome it never learnt (a timeout, a crash) before sending again.

mod file;
mod http;
mod mime;
mod postmark;
mod sendgrid;
mod twilio;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use file::FileProvider;
pub use mime::render_eml;
pub use postmark::{PostmarkConfig, PostmarkProvider, POSTMARK_BATCH_LIMIT};
pub use relance_delivery::{resilience, Lookup, Outcome};
pub use sendgrid::{SendGridConfig, SendGridProvider};
pub use twilio::{TwilioConfig, TwilioProvider};

/// A boxed future, so providers can sit behind `dyn` traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The key carrying relance's send id in provider metadata (echoed back in webhooks).
pub const SEND_ID_KEY: &str = "relance_send";

/// An email address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub address: String,
    pub name: Option<String>,
}

impl Mailbox {
    pub fn new(address: impl Into<String>, name: Option<String>) -> Self {
        Self {
            address: address.into(),
            name: name.filter(|name| !name.trim().is_empty()),
        }
    }

    /// `"Name" <address>` as a provider takes it: the name made one line without bidi
    /// controls or encoded-word look-alikes, and quoted, so it cannot inject a header or pass
    /// for something else.
    pub fn to_header(&self) -> String {
        match &self.name {
            None => self.address.clone(),
            Some(name) => {
                let clean = relance_delivery::text::header_text(name)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"");
                format!("\"{clean}\" <{}>", self.address)
            }
        }
    }
}

/// A rendered email, ready for a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// relance's id for this delivery: sent as metadata, searched for on reconciliation.
    pub send_id: Uuid,
    pub from: Mailbox,
    pub reply_to: Option<String>,
    pub to: Mailbox,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// A grouping tag (`dunning-<policy>-<step>`).
    pub tag: Option<String>,
    /// Correlation values (invoice, step, tenant): short strings, never personal data.
    pub metadata: BTreeMap<String, String>,
    /// When the message is sent (the `Date` header of files).
    pub date: DateTime<Utc>,
}

/// A rendered SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingSms {
    pub send_id: Uuid,
    /// E.164 number.
    pub to: String,
    pub body: String,
    pub date: DateTime<Utc>,
}

/// An email provider.
pub trait EmailProvider: Send + Sync {
    /// A short name for metrics and the audit trail (`postmark`).
    fn name(&self) -> &'static str;

    /// Sends one message.
    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Outcome>;

    /// Most messages [`EmailProvider::send_batch`] sends in one request.
    fn max_batch(&self) -> usize {
        1
    }

    /// Sends several messages; one outcome per message, in order.
    fn send_batch<'a>(&'a self, emails: &'a [OutgoingEmail]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(emails.len());
            for email in emails {
                outcomes.push(self.send(email).await);
            }
            outcomes
        })
    }

    /// Whether the provider already has a message with this send id.
    fn lookup(&self, _send_id: Uuid) -> BoxFuture<'_, Lookup> {
        Box::pin(async { Lookup::Unsupported })
    }
}

/// An SMS provider.
pub trait SmsProvider: Send + Sync {
    fn name(&self) -> &'static str;
    fn send<'a>(&'a self, sms: &'a OutgoingSms) -> BoxFuture<'a, Outcome>;
    fn lookup(&self, _send_id: Uuid) -> BoxFuture<'_, Lookup> {
        Box::pin(async { Lookup::Unsupported })
    }
}

/// Why a provider cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("building the HTTP client: {0}")]
    Client(String),
    #[error("{0}")]
    Config(String),
}
