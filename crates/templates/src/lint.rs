//! The writing rules of good dunning practice, checked on every template of a store.
//!
//! Each template is rendered twice, with [`MessageContext::sample`] (every optional value
//! present, a consolidated statement) and [`MessageContext::minimal`] (one invoice, nothing
//! optional): a variable the context does not have fails the render, and the rules run on
//! what the customer would read.

use crate::context::MessageContext;
use crate::store::{Channel, RenderedMessage, TemplateStore};

/// Longest subject: longer ones are cut off by mail clients and bury the key information.
pub const MAX_SUBJECT_CHARS: usize = 70;
/// Longest SMS: two concatenated GSM segments.
pub const MAX_SMS_CHARS: usize = 320;

/// Words that make a reminder look like a threat or a mass mailing (lower case, compared
/// after lower-casing the subject).
const ALARM_WORDS: [&str; 8] = [
    "urgent",
    "impayé",
    "impaye",
    "relance",
    "unpaid",
    "overdue",
    "final warning",
    "dernier avertissement",
];

/// Greetings that ignore who the customer is.
const GENERIC_GREETINGS: [&str; 6] = [
    "dear customer",
    "dear client",
    "cher client",
    "chère cliente",
    "chers clients",
    "madame, monsieur",
];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `<set>/<locale>/<template>`.
    pub template: String,
    /// Which context it was rendered with: `sample` or `minimal`.
    pub context: &'static str,
    /// A stable rule name, for people and tests.
    pub rule: &'static str,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} ({} context): {}: {}",
            self.template, self.context, self.rule, self.message
        )
    }
}

/// Checks every template of `store`; an empty list means every rule holds.
pub fn lint(store: &TemplateStore) -> Vec<Finding> {
    let mut findings = Vec::new();
    let loaded: Vec<(String, String, String, Channel)> = store
        .templates()
        .map(|(set, locale, template, channel)| {
            (
                set.to_string(),
                locale.to_string(),
                template.to_string(),
                channel,
            )
        })
        .collect();
    for (set, locale, template, channel) in loaded {
        let name = format!("{set}/{locale}/{template}");
        for (context_name, context) in [
            ("sample", MessageContext::sample(&locale)),
            ("minimal", MessageContext::minimal(&locale)),
        ] {
            let mut report = |rule: &'static str, message: String| {
                findings.push(Finding {
                    template: name.clone(),
                    context: context_name,
                    rule,
                    message,
                });
            };
            match store.render_exact(&set, &locale, &template, &context) {
                Ok(message) => check(&message, channel, &context, &mut report),
                Err(error) => report("renders", error.to_string()),
            }
        }
    }
    findings
}

fn check(
    message: &RenderedMessage,
    channel: Channel,
    context: &MessageContext,
    report: &mut impl FnMut(&'static str, String),
) {
    let text = &message.text;
    let lower_text = text.to_lowercase();
    if text.contains('!') || message.subject.contains('!') {
        report(
            "no_exclamation_marks",
            "an exclamation mark reads as shouting".into(),
        );
    }
    for greeting in GENERIC_GREETINGS {
        if lower_text.contains(greeting) {
            report(
                "greets_by_name",
                format!(
                    "{greeting:?}: address the contact by name ({{{{ contact.greeting_name }}}})"
                ),
            );
        }
    }
    if !text.contains(&context.contact.greeting_name) {
        report(
            "greets_by_name",
            "the contact's name is not in the message".into(),
        );
    }
    if !text.contains(&context.invoice.number) {
        report("states_the_facts", "the invoice number is missing".into());
    }
    if !text.contains(&context.total_due) && !text.contains(&context.invoice.amount_due) {
        report("states_the_facts", "the amount due is missing".into());
    }
    if text.contains("{{") || text.contains("{%") || message.subject.contains("{{") {
        report("renders", "template syntax left in the output".into());
    }
    match channel {
        Channel::Email => {
            let subject = message.subject.to_lowercase();
            for word in ALARM_WORDS {
                if subject.contains(word) {
                    report(
                        "calm_subject",
                        format!("the subject says {word:?}; keep it factual"),
                    );
                }
            }
            if has_ordinal_reminder(&subject) {
                report(
                    "calm_subject",
                    "the subject counts reminders (\"3rd reminder\")".into(),
                );
            }
            let length = message.subject.chars().count();
            if length > MAX_SUBJECT_CHARS {
                report(
                    "short_subject",
                    format!(
                        "{length} characters, at most {MAX_SUBJECT_CHARS}: {:?}",
                        message.subject
                    ),
                );
            }
            if message.subject.is_empty() {
                report("short_subject", "the subject is empty".into());
            }
            if !context.consolidated && !message.subject.contains(&context.invoice.number) {
                report(
                    "short_subject",
                    "the subject should name the invoice number".into(),
                );
            }
            if !(message.action_url.starts_with("https://")
                || message.action_url.starts_with("http://"))
            {
                report(
                    "one_call_to_action",
                    format!("the button leads to {:?}, not a link", message.action_url),
                );
            }
            if !text.contains(&message.action_url) {
                report(
                    "one_call_to_action",
                    "the text part lacks the button's link".into(),
                );
            }
            if !text.contains(&context.deadline) {
                report(
                    "one_call_to_action",
                    "the call to action has no date (the deadline)".into(),
                );
            }
            let html = message.html.as_deref().unwrap_or_default();
            let buttons = html.matches("data-role=\"call-to-action\"").count();
            if buttons != 1 {
                report(
                    "one_call_to_action",
                    format!("{buttons} buttons in the HTML; there must be exactly one"),
                );
            }
        }
        Channel::Sms => {
            let length = text.chars().count();
            if length > MAX_SMS_CHARS {
                report(
                    "short_sms",
                    format!("{length} characters, at most {MAX_SMS_CHARS}"),
                );
            }
            if !text.contains(&context.links.pay) {
                report("one_call_to_action", "the SMS lacks the pay link".into());
            }
        }
    }
}

/// "2e relance", "3ème relance", "2nd reminder", "reminder #3", "rappel n°2": counting tells
/// the customer they are one of many.
fn has_ordinal_reminder(subject: &str) -> bool {
    let words: Vec<&str> = subject
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .collect();
    words.windows(2).any(|pair| {
        let (first, second) = (pair[0], pair[1]);
        let ordinal = first.chars().next().is_some_and(|c| c.is_ascii_digit())
            && ["e", "ème", "eme", "nd", "rd", "th", "st", "er", "re"]
                .iter()
                .any(|suffix| first.trim_start_matches(|c: char| c.is_ascii_digit()) == *suffix);
        let numbered = (first == "reminder" || first == "rappel")
            && (second.starts_with('#') || second.starts_with("n°") || second.starts_with("no."));
        (ordinal
            && (second.starts_with("reminder")
                || second.starts_with("rappel")
                || second.starts_with("relance")))
            || numbered
    })
}

#[cfg(test)]
mod tests {
    use super::has_ordinal_reminder;

    #[test]
    fn counted_reminders_are_recognised() {
        for subject in [
            "2e relance facture",
            "3ème rappel",
            "2nd reminder",
            "reminder #3",
            "rappel n°2",
            "invoice 12 (4th reminder)",
        ] {
            assert!(has_ordinal_reminder(subject), "{subject}");
        }
        for subject in [
            "facture f-2026-0412 : échéance le 2 décembre",
            "invoice 2026 reminder",
            "rappel : facture 12",
        ] {
            assert!(!has_ordinal_reminder(subject), "{subject}");
        }
    }
}
