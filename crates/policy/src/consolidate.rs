//! Consolidation: a customer's invoices due for the same step on the same day become one
//! reminder that lists them all; large totals get the step's personal template.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::calendar::local_date;
use crate::model::Policy;
use crate::plan::{PlannedStep, TemplateChoice, Trigger};

/// A step due for one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueStep {
    pub invoice_id: String,
    pub segment: String,
    pub amount_due_minor: i64,
    pub currency: Option<String>,
    pub step: PlannedStep,
}

/// One reminder: a step for one or several invoices of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderGroup {
    pub segment: String,
    pub step: PlannedStep,
    pub invoice_ids: Vec<String>,
    /// Amount due per currency over the invoices.
    pub totals: BTreeMap<String, i64>,
    /// The template, the personal one when a total reaches the policy's threshold.
    pub template: TemplateChoice,
    pub personal: bool,
}

type GroupKey = (String, String, String, &'static str, NaiveDate);

/// Groups the due steps of one customer (in time zone `tz`) into reminders.
pub fn consolidate(policy: &Policy, tz: Tz, mut dues: Vec<DueStep>) -> Vec<ReminderGroup> {
    dues.sort_by(|a, b| (a.step.at, &a.invoice_id).cmp(&(b.step.at, &b.invoice_id)));
    let mut groups: Vec<(Option<GroupKey>, ReminderGroup)> = Vec::new();
    for due in dues {
        // Payment-failure steps are about one payment: never merged.
        let key = (policy.rules.consolidation.enabled && due.step.trigger == Trigger::DueDate)
            .then(|| {
                (
                    due.segment.clone(),
                    due.step.step_id.clone(),
                    due.step.template.template.clone(),
                    due.step.channel.code(),
                    local_date(tz, due.step.at),
                )
            });
        let existing = key.as_ref().and_then(|key| {
            groups
                .iter_mut()
                .find(|(known, _)| known.as_ref() == Some(key))
        });
        match existing {
            Some((_, group)) => {
                group.invoice_ids.push(due.invoice_id.clone());
                if let Some(currency) = &due.currency {
                    *group.totals.entry(currency.clone()).or_insert(0) += due.amount_due_minor;
                }
            }
            None => {
                let mut totals = BTreeMap::new();
                if let Some(currency) = &due.currency {
                    totals.insert(currency.clone(), due.amount_due_minor);
                }
                groups.push((
                    key,
                    ReminderGroup {
                        segment: due.segment,
                        template: due.step.template.clone(),
                        step: due.step,
                        invoice_ids: vec![due.invoice_id],
                        totals,
                        personal: false,
                    },
                ));
            }
        }
    }
    let thresholds = &policy.rules.consolidation.personal_template_above;
    groups
        .into_iter()
        .map(|(_, mut group)| {
            let large = group.totals.iter().any(|(currency, total)| {
                thresholds
                    .get(currency)
                    .is_some_and(|threshold| total >= threshold)
            });
            if let (true, Some(personal)) = (large, &group.step.personal_template) {
                group.template = TemplateChoice {
                    template: personal.clone(),
                    variant: None,
                    experiment: None,
                };
                group.personal = true;
            }
            group
        })
        .collect()
}
