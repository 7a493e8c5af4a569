//! Who a reminder is addressed to: the address for its channel, the name on the envelope and
//! the name in the greeting, each chosen by one order of precedence.

use relance_contracts::commands::{MessageChannel, SendReminderV1};
use relance_contracts::Recipient;

/// The address of the command's channel: the email address of an email, the phone number of an
/// SMS; `None` when the command has none.
pub fn address(command: &SendReminderV1) -> Option<String> {
    let recipient = &command.recipient;
    match command.channel {
        MessageChannel::Email => recipient.email.as_ref().map(|email| email.as_str().into()),
        MessageChannel::Sms => recipient.phone.as_ref().map(|phone| phone.as_str().into()),
    }
}

/// The channel as stored and counted (`email`, `sms`).
pub fn channel_name(channel: MessageChannel) -> &'static str {
    match channel {
        MessageChannel::Email => "email",
        MessageChannel::Sms => "sms",
    }
}

/// How a message names its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// First and last name, when both are known.
    pub full: Option<String>,
    /// The name to greet: the full name, else the first name, else the last name, else the
    /// company; empty when nothing is known.
    pub greeting: String,
}

impl Names {
    /// The display name of the `To` mailbox: the person when known, else whoever is greeted.
    pub fn display(&self) -> Option<String> {
        self.full
            .clone()
            .or_else(|| Some(self.greeting.clone()))
            .filter(|name| !name.trim().is_empty())
    }
}

/// The recipient's names, by precedence, each on one line without bidi controls.
pub fn names(recipient: &Recipient) -> Names {
    let trimmed = |value: Option<&str>| {
        value
            .map(crate::text::one_line)
            .filter(|value| !value.is_empty())
    };
    let first = trimmed(recipient.first_name.as_ref().map(|name| name.as_str()));
    let last = trimmed(recipient.last_name.as_ref().map(|name| name.as_str()));
    let company = trimmed(recipient.company.as_ref().map(|name| name.as_str()));
    let full = match (&first, &last) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        _ => None,
    };
    let greeting = full
        .clone()
        .or(first)
        .or(last)
        .or(company)
        .unwrap_or_default();
    Names { full, greeting }
}
