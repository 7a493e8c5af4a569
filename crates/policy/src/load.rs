//! Reading a policy file and checking it, with errors that name the file, the key and why.

use std::collections::HashSet;
use std::fmt;

use crate::model::{Condition, Policy, Step};

/// What is wrong with a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file (or source name) the policy came from.
    pub file: String,
    /// Where in the policy: `segments[1].steps[0].offset_days`.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.reason)
        }
    }
}

/// Parses and checks the YAML policy `text` read from `file`.
///
/// # Errors
/// Every problem found, each naming the file, the key and the reason.
pub fn parse_policy(file: &str, text: &str) -> Result<Policy, Vec<PolicyError>> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    let policy: Policy = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let message = error.into_inner().to_string();
        // The YAML parser may already start its message with the key.
        let reason = message
            .strip_prefix(&format!("{key}: "))
            .map_or(message.clone(), str::to_string);
        vec![PolicyError {
            file: file.to_string(),
            key,
            reason,
        }]
    })?;
    let mut checker = Checker {
        file,
        errors: Vec::new(),
    };
    checker.policy(&policy);
    if checker.errors.is_empty() {
        Ok(policy)
    } else {
        Err(checker.errors)
    }
}

struct Checker<'a> {
    file: &'a str,
    errors: Vec<PolicyError>,
}

fn is_code(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.as_bytes()[0].is_ascii_lowercase()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_currency(value: &str) -> bool {
    value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_country(value: &str) -> bool {
    value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase())
}

impl Checker<'_> {
    fn fail(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            key: key.into(),
            reason: reason.into(),
        });
    }

    fn code(&mut self, key: &str, value: &str) {
        if !is_code(value) {
            self.fail(
                key,
                format!("{value:?} must be a snake_case code (a-z, 0-9, _)"),
            );
        }
    }

    fn policy(&mut self, policy: &Policy) {
        self.code("policy", &policy.policy);
        if policy.version == 0 {
            self.fail("version", "must be at least 1");
        }
        self.rules(policy);
        if policy.segments.is_empty() {
            self.fail(
                "segments",
                "at least one segment is needed (the default one, without `when`)",
            );
        }
        let mut ids = HashSet::new();
        let last = policy.segments.len().saturating_sub(1);
        for (index, segment) in policy.segments.iter().enumerate() {
            let key = format!("segments[{index}]");
            self.code(&format!("{key}.id"), &segment.id);
            if !ids.insert(segment.id.as_str()) {
                self.fail(
                    format!("{key}.id"),
                    format!("{:?} is used by another segment", segment.id),
                );
            }
            match (&segment.when, index == last) {
                (None, false) => self.fail(
                    format!("{key}.when"),
                    "a segment without `when` matches everyone, so the segments after it would never apply; make it the last one",
                ),
                (Some(_), true) => self.fail(
                    format!("{key}.when"),
                    "the last segment is the default: it must have no `when`",
                ),
                _ => {}
            }
            if let Some(condition) = &segment.when {
                self.condition(&format!("{key}.when"), condition);
            }
            self.steps(&format!("{key}.steps"), &segment.steps, false);
        }
        if let Some(sequence) = &policy.payment_failure {
            self.steps("payment_failure.steps", &sequence.steps, true);
        }
    }

    fn rules(&mut self, policy: &Policy) {
        let rules = &policy.rules;
        if rules.default_timezone.parse::<chrono_tz::Tz>().is_err() {
            self.fail(
                "rules.default_timezone",
                format!(
                    "{:?} is not an IANA time zone such as Europe/Paris",
                    rules.default_timezone
                ),
            );
        }
        if rules.min_days_between_reminders > 365 {
            self.fail("rules.min_days_between_reminders", "must be at most 365");
        }
        if let Some(cap) = rules.max_reminders {
            if cap.count == 0 {
                self.fail("rules.max_reminders.count", "must be at least 1");
            }
            if cap.window_days == 0 || cap.window_days > 366 {
                self.fail(
                    "rules.max_reminders.window_days",
                    "must be between 1 and 366",
                );
            }
        }
        let window = &rules.send_window;
        if window.days.is_empty() {
            self.fail("rules.send_window.days", "at least one day is needed");
        }
        let unique: HashSet<_> = window.days.iter().collect();
        if unique.len() != window.days.len() {
            self.fail("rules.send_window.days", "a day is listed twice");
        }
        if window.start >= window.end {
            self.fail(
                "rules.send_window.end",
                format!(
                    "{} must be after start {}",
                    window.end.format("%H:%M"),
                    window.start.format("%H:%M")
                ),
            );
        }
        for country in rules.holidays.keys() {
            if !is_country(country) {
                self.fail(
                    format!("rules.holidays.{country}"),
                    "must be an ISO 3166-1 alpha-2 country code such as FR",
                );
            }
        }
        for (currency, amount) in &rules.consolidation.personal_template_above {
            let key = format!("rules.consolidation.personal_template_above.{currency}");
            if !is_currency(currency) {
                self.fail(&key, "must be an ISO 4217 currency code such as EUR");
            }
            if *amount < 0 {
                self.fail(&key, format!("{amount} must not be negative (minor units)"));
            }
        }
        if rules.response_deadline_days == 0 || rules.response_deadline_days > 90 {
            self.fail("rules.response_deadline_days", "must be between 1 and 90");
        }
        if let Some(escalation) = &rules.escalation {
            if escalation.after_days > 365 {
                self.fail("rules.escalation.after_days", "must be at most 365");
            }
        }
        let pauses = &rules.pauses;
        if pauses.promise_grace_days > 60 {
            self.fail("rules.pauses.promise_grace_days", "must be at most 60");
        }
        if pauses.max_promise_days == 0 || pauses.max_promise_days > 365 {
            self.fail("rules.pauses.max_promise_days", "must be between 1 and 365");
        }
    }

    fn condition(&mut self, key: &str, condition: &Condition) {
        for (name, percent) in [
            (
                "on_time_percent_at_least",
                condition.on_time_percent_at_least,
            ),
            ("on_time_percent_below", condition.on_time_percent_below),
        ] {
            if percent.is_some_and(|percent| percent > 100) {
                self.fail(format!("{key}.{name}"), "must be a percentage, 0 to 100");
            }
        }
        for (name, amounts) in [
            ("amount_at_least", &condition.amount_at_least),
            ("amount_below", &condition.amount_below),
        ] {
            for (currency, amount) in amounts.iter().flatten() {
                if !is_currency(currency) {
                    self.fail(
                        format!("{key}.{name}.{currency}"),
                        "must be an ISO 4217 currency code",
                    );
                }
                if *amount < 0 {
                    self.fail(
                        format!("{key}.{name}.{currency}"),
                        "must not be negative (minor units)",
                    );
                }
            }
        }
        for country in condition.country.iter().flatten() {
            if !is_country(country) {
                self.fail(
                    format!("{key}.country"),
                    format!("{country:?} is not an ISO 3166-1 alpha-2 code"),
                );
            }
        }
        if condition.risk_level.as_ref().is_some_and(Vec::is_empty) {
            self.fail(format!("{key}.risk_level"), "an empty list matches nobody");
        }
    }

    fn steps(&mut self, key: &str, steps: &[Step], after_trigger_only: bool) {
        if steps.is_empty() {
            self.fail(key, "at least one step is needed");
        }
        let mut ids = HashSet::new();
        let mut previous: Option<i32> = None;
        for (index, step) in steps.iter().enumerate() {
            let key = format!("{key}[{index}]");
            self.code(&format!("{key}.id"), &step.id);
            if !ids.insert(step.id.as_str()) {
                self.fail(
                    format!("{key}.id"),
                    format!("{:?} is used by another step of the sequence", step.id),
                );
            }
            if !(-365..=3650).contains(&step.offset_days) {
                self.fail(
                    format!("{key}.offset_days"),
                    "must be between -365 and 3650",
                );
            }
            if after_trigger_only && step.offset_days < 0 {
                self.fail(
                    format!("{key}.offset_days"),
                    "counts from the failed payment, so it cannot be negative",
                );
            }
            if let Some(previous) = previous {
                if step.offset_days <= previous {
                    self.fail(
                        format!("{key}.offset_days"),
                        format!("{} must be after the previous step's {previous}: steps are in time order", step.offset_days),
                    );
                }
            }
            previous = Some(step.offset_days);
            self.code(&format!("{key}.template"), &step.template);
            if let Some(personal) = &step.personal_template {
                self.code(&format!("{key}.personal_template"), personal);
            }
            if let Some(experiment) = &step.experiment {
                self.code(&format!("{key}.experiment.id"), &experiment.id);
                if experiment.variants.len() < 2 {
                    self.fail(
                        format!("{key}.experiment.variants"),
                        "an experiment compares at least two variants",
                    );
                }
                let mut variant_ids = HashSet::new();
                for (variant_index, variant) in experiment.variants.iter().enumerate() {
                    let variant_key = format!("{key}.experiment.variants[{variant_index}]");
                    self.code(&format!("{variant_key}.id"), &variant.id);
                    self.code(&format!("{variant_key}.template"), &variant.template);
                    if !variant_ids.insert(variant.id.as_str()) {
                        self.fail(format!("{variant_key}.id"), "is used by another variant");
                    }
                    if variant.weight == 0 {
                        self.fail(format!("{variant_key}.weight"), "must be at least 1");
                    }
                }
            }
        }
    }
}
