//! The policy format. Field docs say what each key means; `docs/policy.md` has an annotated
//! example.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

/// A dunning policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's id (`default`, or a tenant's name for its own policy).
    pub policy: String,
    /// Increases with every change; carried on every command it produces.
    pub version: u32,
    #[serde(default)]
    pub description: Option<String>,
    pub rules: Rules,
    /// Segments in order: the first whose `when` matches applies; the last has no `when`.
    pub segments: Vec<Segment>,
    /// The sequence started by a failed (recurring) payment, counted in days from the failure.
    #[serde(default)]
    pub payment_failure: Option<PaymentFailureSequence>,
}

/// Rules that hold across steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Time zone used when a customer has none (IANA name).
    pub default_timezone: String,
    /// Minimum whole days between two reminders to one customer, whatever the invoices.
    pub min_days_between_reminders: u32,
    /// At most `count` reminders to one customer in any `window_days` days.
    #[serde(default)]
    pub max_reminders: Option<ReminderCap>,
    /// When messages may go out, in the customer's time zone.
    pub send_window: SendWindow,
    /// Public holidays per country (ISO 3166-1 alpha-2): nothing goes out on these dates.
    #[serde(default)]
    pub holidays: BTreeMap<String, Vec<NaiveDate>>,
    /// Several invoices of one customer due for a step on the same day become one reminder.
    pub consolidation: Consolidation,
    /// Days the customer is given to pay or answer, from the reminder (its response deadline).
    pub response_deadline_days: u32,
    /// A task for a person after the last step.
    #[serde(default)]
    pub escalation: Option<Escalation>,
    pub pauses: PauseRules,
}

/// A cap on reminders per customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReminderCap {
    pub count: u32,
    pub window_days: u32,
}

/// A weekday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    /// The chrono weekday.
    pub fn weekday(self) -> chrono::Weekday {
        match self {
            Self::Mon => chrono::Weekday::Mon,
            Self::Tue => chrono::Weekday::Tue,
            Self::Wed => chrono::Weekday::Wed,
            Self::Thu => chrono::Weekday::Thu,
            Self::Fri => chrono::Weekday::Fri,
            Self::Sat => chrono::Weekday::Sat,
            Self::Sun => chrono::Weekday::Sun,
        }
    }
}

/// Days and hours messages may go out, in the customer's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendWindow {
    pub days: Vec<Day>,
    /// Opening time, `HH:MM`.
    #[serde(with = "hh_mm")]
    pub start: NaiveTime,
    /// Closing time, `HH:MM`, after `start`.
    #[serde(with = "hh_mm")]
    pub end: NaiveTime,
}

mod hh_mm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &NaiveTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&time.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a time of day HH:MM")))
    }
}

/// Consolidation of a customer's invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consolidation {
    pub enabled: bool,
    /// Per currency, the amount (minor units) from which a reminder uses the step's
    /// `personal_template`: large amounts get a personal message.
    #[serde(default)]
    pub personal_template_above: BTreeMap<String, i64>,
}

/// How an escalation task is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Days after the last step.
    pub after_days: u32,
    pub task: TaskChannel,
    pub priority: Priority,
}

/// How dunning waits and resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRules {
    /// Days after a promised date before dunning resumes if no payment came.
    pub promise_grace_days: u32,
    /// The furthest date a customer may promise, in days from the promise.
    pub max_promise_days: u32,
    /// After a pause (or when several steps came due at once): send only the latest step that
    /// is due (`latest_due`), or resume with the next step not sent (`next_step`).
    pub after_pause: AfterPause,
}

/// How dunning resumes when several steps are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterPause {
    LatestDue,
    NextStep,
}

/// Risk levels, as customers carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// When a segment applies. Every condition given must hold; none given matches everyone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default)]
    pub vip: Option<bool>,
    #[serde(default)]
    pub risk_level: Option<Vec<Risk>>,
    /// The relationship started at most this many days ago (new customers).
    #[serde(default)]
    pub customer_since_within_days: Option<u32>,
    /// The customer paid at least this share of invoices on time (percent).
    #[serde(default)]
    pub on_time_percent_at_least: Option<u32>,
    /// The customer paid less than this share of invoices on time (percent).
    #[serde(default)]
    pub on_time_percent_below: Option<u32>,
    /// On average the customer pays more than this many days late.
    #[serde(default)]
    pub average_days_late_above: Option<u32>,
    /// The invoice's amount due is at least this, per currency (minor units).
    #[serde(default)]
    pub amount_at_least: Option<BTreeMap<String, i64>>,
    /// The invoice's amount due is below this, per currency (minor units).
    #[serde(default)]
    pub amount_below: Option<BTreeMap<String, i64>>,
    /// The customer has at least one of these tags.
    #[serde(default)]
    pub tags_any: Option<Vec<String>>,
    /// The customer is in one of these countries.
    #[serde(default)]
    pub country: Option<Vec<String>>,
}

/// A segment and its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub when: Option<Condition>,
    pub steps: Vec<Step>,
}

/// How a step reaches the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepChannel {
    Email,
    Sms,
    /// A task for a person.
    PhoneCall,
    /// A task for a person.
    Letter,
    /// A task for a person: the "mise en demeure".
    FormalNotice,
}

impl StepChannel {
    /// Whether a person does it (a task) rather than a message provider.
    pub fn is_task(self) -> bool {
        matches!(self, Self::PhoneCall | Self::Letter | Self::FormalNotice)
    }

    /// The channel as a code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::PhoneCall => "phone_call",
            Self::Letter => "letter",
            Self::FormalNotice => "formal_notice",
        }
    }
}

/// Tasks a person can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskChannel {
    PhoneCall,
    Letter,
    FormalNotice,
    CollectionAgency,
    ManualReview,
}

impl TaskChannel {
    pub fn code(self) -> &'static str {
        match self {
            Self::PhoneCall => "phone_call",
            Self::Letter => "letter",
            Self::FormalNotice => "formal_notice",
            Self::CollectionAgency => "collection_agency",
            Self::ManualReview => "manual_review",
        }
    }
}

/// Priority of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
}

/// Tone of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Friendly,
    Firm,
    Final,
}

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub id: String,
    /// Days from the trigger date (the due date, or the failed payment): negative before it.
    pub offset_days: i32,
    pub channel: StepChannel,
    pub template: String,
    pub tone: Tone,
    /// A person approves the reminder before it goes out ("automatique à confirmer").
    #[serde(default)]
    pub approval: bool,
    /// A customer reply after this step stops automatic steps and hands over to a person.
    #[serde(default)]
    pub stop_on_reply: bool,
    /// The template for reminders above `rules.consolidation.personal_template_above`.
    #[serde(default)]
    pub personal_template: Option<String>,
    /// An A/B test of templates.
    #[serde(default)]
    pub experiment: Option<Experiment>,
}

/// An A/B test: each customer gets one variant, always the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub id: String,
    pub variants: Vec<Variant>,
}

/// A variant of an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub id: String,
    pub template: String,
    /// Relative weight; a customer gets the variant with probability weight / sum of weights.
    pub weight: u32,
}

/// The sequence started by a failed payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentFailureSequence {
    pub steps: Vec<Step>,
}
