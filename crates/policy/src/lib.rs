//! relance's dunning policy, as pure functions: no I/O, no clock.
//!
//! A policy (YAML, one per tenant, with a default) says, per customer segment, which steps to
//! take relative to an invoice's due date (or to a failed payment), through which channel,
//! with which template and tone, and the rules that hold across steps: minimum gap and caps
//! per customer, send windows in the customer's time zone and holidays per country,
//! consolidation of a customer's invoices into one reminder, escalation to a person, and how
//! dunning resumes after a pause.
//!
//! [`plan`] gives an invoice's next action and its time, or why there is none;
//! [`plan_customer`] decides everything due for a customer at an instant (reminders with their
//! commands, escalations, next actions) — the scheduler's one planning loop; [`simulate`]
//! repeats it to show a whole timeline.

mod ab;
mod calendar;
mod check;
pub mod commands;
mod consolidate;
mod customer;
mod load;
mod model;
mod plan;
mod simulate;

mod set;

pub use ab::assign_variant;
pub use calendar::{is_sendable, next_send_time};
pub use check::{templates_used, warnings, TemplateUse};
pub use consolidate::{consolidate, DueStep, ReminderGroup};
pub use customer::{attempt_of, plan_customer, CustomerPlan, PastReminder};
pub use load::{parse_policy, PolicyError};
pub use model::*;
pub use plan::{
    customer_zone, plan, Adjustment, CustomerSnapshot, Decision, DoneReason, PastAction,
    PastActionKind, Plan, PlannedStep, SkipReason, SkippedStep, TemplateChoice, Trigger,
};
pub use set::PolicySet;
pub use simulate::{simulate, trigger_name, TimelineEntry};
