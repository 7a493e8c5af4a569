//! The dispatcher: claims due deliveries, reconciles attempts whose outcome is unknown, runs the
//! guard, renders, and sends through the tenant's provider, recording each attempt before the
//! call and its outcome after, with the audit event in the same transaction.
//!
//! Exactly once: a delivery is claimed (`in_flight`, with a lease) and its attempt recorded in
//! committed transactions before the provider is called. If the sender dies before recording
//! the outcome, the lease runs out and the delivery is claimed again with `reconcile` set: the
//! provider is asked whether it has a message with our send id before anything is sent again.
//! A provider that cannot be searched leaves the delivery `unknown` and hands it to a person
//! rather than risk a second message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use relance_channels::resilience::Backoff;
use relance_channels::{Lookup, Outcome, OutgoingEmail, OutgoingSms};
use relance_config::{LinkSettings, SenderSettings, TopicSettings};
use relance_contracts::commands::{MessageChannel, ReminderInvoice, SendReminderV1};
use relance_contracts::Envelope;
use relance_kafka::{DeadLetter, DeadLetterWriter};
use relance_links::LinkSigner;
use relance_runtime::Clock;
use relance_storage::deliveries::{self, ClaimedDelivery, DeliveryUpdate};
use relance_storage::outbox::{self, OutboxRecord};
use relance_storage::StorageError;
use relance_templates::TemplateStore;
use serde::Deserialize as _;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit;
use crate::compose;
use crate::guard::{self, GuardInvoice, SkipReason, Verdict};
use crate::intake::Source;
use crate::metrics::{DeliveryLabels, SenderMetrics};
use crate::providers::{Provider, Providers};

/// Everything the dispatcher works with.
pub struct Dispatcher {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub settings: SenderSettings,
    pub links: LinkSettings,
    pub signer: Arc<LinkSigner>,
    pub templates: Arc<TemplateStore>,
    pub providers: Arc<Providers>,
    pub topics: TopicSettings,
    pub dead_letters: DeadLetterWriter,
    pub metrics: SenderMetrics,
    /// Woken by intake when deliveries arrive.
    pub wake: Arc<Notify>,
    /// Woken when the outbox has records to publish.
    pub relay: Arc<Notify>,
}

/// A claimed delivery with its command.
struct Job {
    claimed: ClaimedDelivery,
    envelope: Envelope<SendReminderV1>,
    labels: DeliveryLabels,
}

impl Job {
    fn tenant(&self) -> &str {
        &self.claimed.tenant
    }

    fn command(&self) -> &SendReminderV1 {
        &self.envelope.data
    }

    fn recipient(&self) -> Option<String> {
        let recipient = &self.command().recipient;
        match self.command().channel {
            MessageChannel::Email => recipient
                .email
                .as_ref()
                .map(|email| email.as_str().to_string()),
            MessageChannel::Sms => recipient
                .phone
                .as_ref()
                .map(|phone| phone.as_str().to_string()),
        }
    }

    fn channel(&self) -> &'static str {
        match self.command().channel {
            MessageChannel::Email => "email",
            MessageChannel::Sms => "sms",
        }
    }
}

enum Message {
    Email(OutgoingEmail),
    Sms(OutgoingSms),
}

/// A delivery ready to go: rendered, with its provider.
struct Ready {
    job: Job,
    provider: Arc<Provider>,
    message: Message,
    subject: Option<String>,
    body_sha256: String,
}

/// Why and how a delivery is given up.
struct GiveUp<'a> {
    /// The failure reason (a metric label).
    reason: &'static str,
    code: &'a str,
    message: &'a str,
    /// Send the original command to the dead-letter topic.
    dead_letter: bool,
    /// Suppress the recipient's address (the provider says it is inactive).
    suppress: bool,
}

/// Outcomes of a round, committed together: one transaction per stage of a round (guard and
/// render; each provider call) instead of one per delivery.
#[derive(Default)]
struct Round {
    settlements: Vec<Settlement>,
}

/// A delivery's new state, what it publishes, and what to count once it is committed.
struct Settlement {
    update: DeliveryUpdate,
    records: Vec<OutboxRecord>,
    /// Suppress the recipient's address (tenant, channel, address, detail).
    suppression: Option<(String, &'static str, String, String)>,
    metric: Option<Metric>,
}

/// A count to make once its settlement is committed.
enum Metric {
    Sent(DeliveryLabels, String),
    Skipped(DeliveryLabels, &'static str),
    Failed(DeliveryLabels, &'static str),
    Retry(String, &'static str),
}

impl Round {
    fn settle(
        &mut self,
        update: DeliveryUpdate,
        records: Vec<Option<OutboxRecord>>,
        metric: Option<Metric>,
    ) {
        self.settlements.push(Settlement {
            update,
            records: records.into_iter().flatten().collect(),
            suppression: None,
            metric,
        });
    }
}

/// What a reconciliation decided.
enum Reconciled {
    /// The provider has no such message: go on and send.
    Send,
    /// Settled (found, unknown, or to be asked again later).
    Settled,
}

impl Dispatcher {
    /// Dispatches until `shutdown`; the round in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = Duration::from_millis(self.settings.dispatch_interval_ms);
        let full = self.settings.dispatch_batch as usize;
        loop {
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match self.tick().await {
                    Ok(claimed) if claimed >= full => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(error = ?relance_telemetry::ErrorChain(&error), "Dispatching failed; deliveries in hand are retried after their lease.");
                        break;
                    }
                }
            }
            if let Ok((due, waiting)) = deliveries::backlog(&self.pool, self.clock.now()).await {
                self.metrics.backlog(due, waiting);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One round: claims due deliveries and takes each to an outcome. Returns how many were
    /// claimed.
    ///
    /// # Errors
    /// [`StorageError`] when the database fails; deliveries claimed and not settled are taken
    /// up again when their lease ends.
    pub async fn tick(&self) -> Result<usize, StorageError> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::milliseconds(self.settings.lease_ms as i64);
        let claimed = deliveries::claim_due(
            &self.pool,
            now,
            lease_until,
            i64::from(self.settings.dispatch_batch),
        )
        .await?;
        let count = claimed.len();
        if count == 0 {
            return Ok(0);
        }
        let mut round = Round::default();
        let mut jobs = Vec::with_capacity(count);
        for claimed in claimed {
            match Envelope::<SendReminderV1>::deserialize(&claimed.command) {
                Ok(envelope) => {
                    let labels = DeliveryLabels {
                        tenant: claimed.tenant.clone(),
                        segment: claimed.segment.clone(),
                        step: claimed.step_id.clone(),
                        channel: claimed.channel.clone(),
                        template: claimed.template.clone(),
                        variant: claimed.variant.clone().unwrap_or_default(),
                    };
                    jobs.push(Job {
                        claimed,
                        envelope,
                        labels,
                    });
                }
                Err(error) => self.unreadable(&mut round, &claimed, &error.to_string()),
            }
        }
        let mut to_guard = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.claimed.reconcile {
                if let Reconciled::Send = self.reconcile(&mut round, &job).await {
                    to_guard.push(job);
                }
            } else {
                to_guard.push(job);
            }
        }
        let ready = self.guard_and_render(&mut round, to_guard).await?;
        self.flush(&mut round).await?;
        let mut groups: BTreeMap<String, Vec<Ready>> = BTreeMap::new();
        for item in ready {
            groups
                .entry(item.provider.name.clone())
                .or_default()
                .push(item);
        }
        for (_, group) in groups {
            self.deliver(&mut round, group).await?;
            // Outcomes are recorded as soon as the provider answered.
            self.flush(&mut round).await?;
        }
        Ok(count)
    }

    /// Commits the settlements of a round in one transaction, then counts them.
    async fn flush(&self, round: &mut Round) -> Result<(), StorageError> {
        if round.settlements.is_empty() {
            return Ok(());
        }
        let settlements = std::mem::take(&mut round.settlements);
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let mut records = Vec::new();
        for settlement in &settlements {
            deliveries::apply_update(&mut transaction, &settlement.update).await?;
            if let Some((tenant, channel, address, detail)) = &settlement.suppression {
                deliveries::suppress(
                    &mut transaction,
                    tenant,
                    channel,
                    address,
                    "inactive",
                    "sender",
                    Some(detail),
                )
                .await?;
            }
            records.extend(settlement.records.iter().cloned());
        }
        outbox::enqueue(&mut transaction, &records).await?;
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::Query {
                context: "committing delivery outcomes",
                source,
            })?;
        for settlement in settlements {
            match settlement.metric {
                Some(Metric::Sent(labels, provider)) => self.metrics.sent(&labels, &provider),
                Some(Metric::Skipped(labels, reason)) => self.metrics.skipped(&labels, reason),
                Some(Metric::Failed(labels, reason)) => self.metrics.failed(&labels, reason),
                Some(Metric::Retry(provider, class)) => self.metrics.retry(&provider, class),
                None => {}
            }
        }
        if !records.is_empty() {
            self.relay.notify_one();
        }
        Ok(())
    }

    fn dead_letter(&self, job: &Job, reason: &'static str, detail: String) -> Option<OutboxRecord> {
        let source: Source = serde_json::from_value(job.claimed.source.clone()).ok()?;
        let identity = relance_contracts::dead_letter::EventIdentity {
            id: Some(job.envelope.id.clone()),
            event_type: Some(job.envelope.event_type.clone()),
            tenant: Some(job.envelope.tenant.clone()),
        };
        Some(relance_events::to_outbox(self.dead_letters.build(
            &source.record(),
            &DeadLetter {
                reason,
                detail,
                identity: Some(identity),
            },
        )))
    }

    fn unreadable(&self, round: &mut Round, claimed: &ClaimedDelivery, error: &str) {
        tracing::error!(delivery = %claimed.delivery_id, error, "A stored command cannot be read back; the delivery is failed.");
        let update = DeliveryUpdate {
            delivery_id: claimed.delivery_id,
            status: "failed",
            outcome: Some("permanent".into()),
            error_code: Some("unreadable_command".into()),
            error_message: Some(error.chars().take(2000).collect()),
            at: self.clock.now(),
            ..DeliveryUpdate::default()
        };
        round.settle(update, Vec::new(), None);
    }

    /// Asks the provider of the unknown attempt whether it has the message.
    async fn reconcile(&self, round: &mut Round, job: &Job) -> Reconciled {
        // No attempt was ever begun: nothing can have been sent.
        let Some(name) = job.claimed.provider.clone() else {
            return Reconciled::Send;
        };
        let send_id = job.claimed.delivery_id;
        let lookup = match self.providers.get(&name) {
            None => Lookup::Unsupported,
            Some(provider) => match job.command().channel {
                MessageChannel::Email => match &provider.email {
                    Some(email) => email.lookup(send_id).await,
                    None => Lookup::Unsupported,
                },
                MessageChannel::Sms => match &provider.sms {
                    Some(sms) => sms.lookup(send_id).await,
                    None => Lookup::Unsupported,
                },
            },
        };
        let now = self.clock.now();
        let topic = &self.topics.events;
        match lookup {
            Lookup::Found { message_id } => {
                self.metrics.reconciled(&name, "found");
                tracing::info!(delivery = %send_id, provider = %name, "The provider has the message of an unfinished attempt: recorded as sent.");
                let recipient = job.recipient();
                let update = DeliveryUpdate {
                    delivery_id: send_id,
                    status: "sent",
                    provider_message_id: message_id.clone(),
                    recipient: recipient.clone(),
                    outcome: Some("reconciled".into()),
                    at: now,
                    ..DeliveryUpdate::default()
                };
                let event = audit::sent(
                    topic,
                    job.tenant(),
                    send_id,
                    job.command(),
                    &audit::Sent {
                        provider: &name,
                        provider_message_id: message_id.as_deref(),
                        recipient: recipient.as_deref(),
                        subject: None,
                        body_sha256: None,
                    },
                    now,
                );
                round.settle(
                    update,
                    vec![event],
                    Some(Metric::Sent(job.labels.clone(), name)),
                );
                Reconciled::Settled
            }
            Lookup::NotFound => {
                self.metrics.reconciled(&name, "not_found");
                Reconciled::Send
            }
            Lookup::Unavailable(reason) => {
                self.metrics.reconciled(&name, "unavailable");
                tracing::warn!(delivery = %send_id, provider = %name, reason = %reason, "Cannot ask the provider about an unfinished attempt yet.");
                let update = DeliveryUpdate {
                    delivery_id: send_id,
                    status: "pending",
                    next_attempt_at: Some(
                        now + chrono::Duration::milliseconds(
                            self.settings.reconcile_delay_ms.max(1000) as i64,
                        ),
                    ),
                    reconcile: true,
                    outcome: Some("ambiguous".into()),
                    error_code: Some("reconcile_unavailable".into()),
                    error_message: Some(reason.chars().take(2000).collect()),
                    at: now,
                    ..DeliveryUpdate::default()
                };
                round.settle(update, Vec::new(), None);
                Reconciled::Settled
            }
            Lookup::Unsupported => {
                self.metrics.reconciled(&name, "unsupported");
                let message = format!(
                    "An attempt through {name} ended without an answer and {name} cannot be searched by send id: the reminder may or may not have reached the customer. It is not sent again automatically; check with the customer or the provider's activity log."
                );
                tracing::warn!(delivery = %send_id, provider = %name, "Outcome of an attempt unknown; handed to a person.");
                let attempt = job.claimed.attempts;
                let update = DeliveryUpdate {
                    delivery_id: send_id,
                    status: "unknown",
                    outcome: Some("ambiguous".into()),
                    error_code: Some("outcome_unknown".into()),
                    error_message: Some(message.clone()),
                    at: now,
                    ..DeliveryUpdate::default()
                };
                let failure = audit::Failure {
                    provider: &name,
                    code: "outcome_unknown",
                    message: &message,
                    retryable: false,
                    attempt,
                };
                let records = vec![
                    audit::failed(topic, job.tenant(), send_id, job.command(), &failure, now),
                    audit::task(
                        &self.topics.tasks,
                        job.tenant(),
                        send_id,
                        job.command(),
                        &message,
                        now,
                    ),
                ];
                round.settle(
                    update,
                    records,
                    Some(Metric::Failed(job.labels.clone(), "outcome_unknown")),
                );
                Reconciled::Settled
            }
        }
    }

    async fn guard_and_render(
        &self,
        round: &mut Round,
        jobs: Vec<Job>,
    ) -> Result<Vec<Ready>, StorageError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let today = now.date_naive();
        let mut invoice_ids: Vec<String> = jobs
            .iter()
            .flat_map(|job| job.claimed.invoice_ids.clone())
            .collect();
        invoice_ids.sort();
        invoice_ids.dedup();
        let mut customer_ids: Vec<String> = jobs
            .iter()
            .map(|job| job.claimed.customer_id.clone())
            .collect();
        customer_ids.sort();
        customer_ids.dedup();
        let window = chrono::Duration::hours(i64::from(self.settings.frequency_cap_window_hours));
        let invoices: Vec<GuardInvoice> = relance_storage::invoices::load(&self.pool, &invoice_ids)
            .await?
            .iter()
            .map(|invoice| GuardInvoice::of(invoice, today))
            .collect();
        let customers =
            deliveries::guard_customers(&self.pool, &customer_ids, now - window).await?;
        let keys: Vec<(String, String, String)> = jobs
            .iter()
            .filter_map(|job| {
                job.recipient()
                    .map(|address| (job.tenant().to_string(), job.channel().to_string(), address))
            })
            .collect();
        let suppressed: HashMap<(String, String, String), String> =
            deliveries::suppressions(&self.pool, &keys)
                .await?
                .into_iter()
                .map(|(tenant, channel, address, reason)| ((tenant, channel, address), reason))
                .collect();
        // Messages this round counts against the cap like messages already sent.
        let mut sent_this_round: HashMap<String, i64> = HashMap::new();
        let mut ready = Vec::new();
        for job in jobs {
            let mut customer = customers
                .iter()
                .find(|customer| customer.customer_id == job.claimed.customer_id)
                .cloned();
            if let Some(customer) = customer.as_mut() {
                customer.sent_recently += sent_this_round
                    .get(&customer.customer_id)
                    .copied()
                    .unwrap_or(0);
            }
            let suppression = job.recipient().and_then(|address| {
                suppressed
                    .get(&(
                        job.tenant().to_string(),
                        job.channel().to_string(),
                        address.to_lowercase(),
                    ))
                    .cloned()
            });
            let verdict = guard::decide(&guard::Facts {
                tenant: job.tenant(),
                command: job.command(),
                invoices: &invoices,
                customer: customer.as_ref(),
                suppression: suppression.as_deref(),
                today,
                cap_count: self.settings.frequency_cap_count,
            });
            match verdict {
                Verdict::Skip { reason, detail } => self.skip(round, &job, reason, &detail),
                Verdict::Send {
                    invoices: kept,
                    dropped,
                } => {
                    if !dropped.is_empty() {
                        tracing::info!(delivery = %job.claimed.delivery_id, dropped = ?dropped, "Invoices left out of a reminder: they no longer need one.");
                    }
                    if let Some(item) = self.render(round, job, &kept, now) {
                        *sent_this_round
                            .entry(item.job.claimed.customer_id.clone())
                            .or_default() += 1;
                        ready.push(item);
                    }
                }
            }
        }
        Ok(ready)
    }

    fn skip(&self, round: &mut Round, job: &Job, reason: SkipReason, detail: &str) {
        let now = self.clock.now();
        tracing::info!(delivery = %job.claimed.delivery_id, reason = reason.code(), detail, "Reminder skipped by the guard.");
        let update = DeliveryUpdate {
            delivery_id: job.claimed.delivery_id,
            status: "skipped",
            skip_reason: Some(reason.code().into()),
            outcome: Some("skipped".into()),
            error_message: Some(detail.chars().take(2000).collect()),
            at: now,
            ..DeliveryUpdate::default()
        };
        let event = audit::skipped(
            &self.topics.events,
            job.tenant(),
            job.claimed.delivery_id,
            job.command(),
            reason.code(),
            detail,
            now,
        );
        round.settle(
            update,
            vec![event],
            Some(Metric::Skipped(job.labels.clone(), reason.code())),
        );
    }

    /// Gives a delivery up for good: failed, with the event, the original command in the
    /// dead-letter topic and a task for a person.
    fn give_up(&self, round: &mut Round, job: &Job, provider: &str, failure: GiveUp<'_>) {
        let GiveUp {
            reason,
            code,
            message,
            dead_letter,
            suppress,
        } = failure;
        let now = self.clock.now();
        let attempt = job.claimed.attempts + 1;
        let update = DeliveryUpdate {
            delivery_id: job.claimed.delivery_id,
            status: "failed",
            outcome: Some(
                if reason == "attempts_exhausted" {
                    "transient"
                } else {
                    "permanent"
                }
                .into(),
            ),
            error_code: Some(code.chars().take(200).collect()),
            error_message: Some(message.chars().take(2000).collect()),
            at: now,
            ..DeliveryUpdate::default()
        };
        let failure = audit::Failure {
            provider,
            code,
            message,
            retryable: reason == "attempts_exhausted",
            attempt,
        };
        let mut records = vec![audit::failed(
            &self.topics.events,
            job.tenant(),
            job.claimed.delivery_id,
            job.command(),
            &failure,
            now,
        )];
        if dead_letter {
            records.push(self.dead_letter(job, reason, format!("{provider} {code}: {message}")));
        }
        let task_reason = format!("The reminder could not be delivered ({reason}: {provider} {code}: {message}). Contact the customer another way or correct the contact details.");
        records.push(audit::task(
            &self.topics.tasks,
            job.tenant(),
            job.claimed.delivery_id,
            job.command(),
            &task_reason,
            now,
        ));
        round.settle(
            update,
            records,
            Some(Metric::Failed(job.labels.clone(), reason)),
        );
        if suppress {
            if let (Some(settlement), Some(address)) =
                (round.settlements.last_mut(), job.recipient())
            {
                settlement.suppression = Some((
                    job.tenant().to_string(),
                    job.channel(),
                    address,
                    message.to_string(),
                ));
            }
        }
        tracing::warn!(delivery = %job.claimed.delivery_id, reason, provider, code, message, "Reminder failed for good; a task was created.");
    }

    fn render(
        &self,
        round: &mut Round,
        job: Job,
        invoices: &[ReminderInvoice],
        now: DateTime<Utc>,
    ) -> Option<Ready> {
        let identity = self.settings.identity_of(job.tenant());
        let provider_name = match job.command().channel {
            MessageChannel::Email => &identity.email_provider,
            MessageChannel::Sms => &identity.sms_provider,
        };
        let Some(provider) = self.providers.get(provider_name) else {
            self.give_up(
                round,
                &job,
                provider_name,
                GiveUp {
                    reason: "no_provider",
                    code: "no_provider",
                    message: "the configured provider does not exist",
                    dead_letter: false,
                    suppress: false,
                },
            );
            return None;
        };
        let locale = job.command().locale.as_str().to_string();
        let texts = self.templates.texts(&identity.template_set, &locale);
        let context = compose::context(&compose::Inputs {
            tenant: job.tenant(),
            command: job.command(),
            invoices,
            identity: &identity,
            texts: &texts,
            links: &self.links,
            signer: &self.signer,
            now,
            today: now.date_naive(),
        });
        let rendered = match self.templates.render(
            &identity.template_set,
            job.command().template.id.as_str(),
            &context,
        ) {
            Ok(rendered) => rendered,
            Err(error) => {
                let message = error.to_string();
                self.give_up(
                    round,
                    &job,
                    &provider.name,
                    GiveUp {
                        reason: "template_error",
                        code: "template_error",
                        message: &message,
                        dead_letter: true,
                        suppress: false,
                    },
                );
                return None;
            }
        };
        let send_id = job.claimed.delivery_id;
        let message = match (job.command().channel, rendered.channel) {
            (MessageChannel::Email, relance_templates::Channel::Email) => compose::email(
                send_id,
                job.tenant(),
                job.command(),
                &identity,
                &rendered,
                now,
            )
            .map(Message::Email),
            (MessageChannel::Sms, relance_templates::Channel::Sms) => {
                compose::sms(send_id, job.command(), &rendered, now).map(Message::Sms)
            }
            _ => {
                let message = format!(
                    "template {} is for another channel than the command's",
                    rendered.source
                );
                self.give_up(
                    round,
                    &job,
                    &provider.name,
                    GiveUp {
                        reason: "template_error",
                        code: "template_channel",
                        message: &message,
                        dead_letter: true,
                        suppress: false,
                    },
                );
                return None;
            }
        };
        let Some(message) = message else {
            self.skip(
                round,
                &job,
                SkipReason::NoContactAddress,
                "the command has no address for its channel",
            );
            return None;
        };
        Some(Ready {
            subject: Some(rendered.subject.clone()).filter(|subject| !subject.is_empty()),
            body_sha256: compose::body_sha256(&rendered),
            job,
            provider,
            message,
        })
    }

    /// Sends one provider's deliveries and records every outcome.
    async fn deliver(&self, round: &mut Round, group: Vec<Ready>) -> Result<(), StorageError> {
        let Some(provider) = group.first().map(|item| item.provider.clone()) else {
            return Ok(());
        };
        if let Err(wait) = provider.permit() {
            let until = self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
            tracing::info!(provider = %provider.name, deliveries = group.len(), until = %until, "The provider's circuit is open; deliveries wait.");
            for item in &group {
                let update = DeliveryUpdate {
                    delivery_id: item.job.claimed.delivery_id,
                    status: "pending",
                    next_attempt_at: Some(until),
                    at: self.clock.now(),
                    error_code: Some("circuit_open".into()),
                    ..DeliveryUpdate::default()
                };
                round.settle(update, Vec::new(), None);
            }
            return Ok(());
        }
        let wait = provider.reserve(u32::try_from(group.len()).unwrap_or(u32::MAX));
        if !wait.is_zero() {
            tokio::time::sleep(wait.min(Duration::from_millis(self.settings.lease_ms / 2))).await;
        }
        let ids: Vec<uuid::Uuid> = group
            .iter()
            .map(|item| item.job.claimed.delivery_id)
            .collect();
        deliveries::begin_attempts(&self.pool, &ids, &provider.name, self.clock.now()).await?;
        let outcomes = self.send(&provider, &group).await;
        let mut healthy = None;
        let mut misconfigured = None;
        for (item, outcome) in group.iter().zip(outcomes) {
            match &outcome {
                Outcome::Accepted { .. } | Outcome::Rejected { .. } => {
                    healthy = Some(healthy.unwrap_or(true))
                }
                Outcome::Transient { .. } | Outcome::Ambiguous { .. } => healthy = Some(false),
                Outcome::Misconfigured { code, message } => {
                    misconfigured = Some((code.clone(), message.clone()))
                }
            }
            self.record_outcome(round, item, outcome);
        }
        if let Some((code, message)) = misconfigured {
            provider.pause(Duration::from_millis(self.settings.config_pause_ms));
            self.metrics.circuit_opened(&provider.name, "config");
            tracing::error!(provider = %provider.name, code, message, pause_ms = self.settings.config_pause_ms, "The provider refuses our configuration (credentials, sender identity or account): deliveries wait until it is fixed.");
        } else if let Some(healthy) = healthy {
            if !provider.record(healthy) {
                self.metrics.circuit_opened(&provider.name, "failures");
                tracing::warn!(provider = %provider.name, "The provider keeps failing; its circuit is open and deliveries wait.");
            }
        }
        Ok(())
    }

    async fn send(&self, provider: &Provider, group: &[Ready]) -> Vec<Outcome> {
        let emails: Vec<&OutgoingEmail> = group
            .iter()
            .filter_map(|item| match &item.message {
                Message::Email(email) => Some(email),
                Message::Sms(_) => None,
            })
            .collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; group.len()];
        if let Some(email_provider) = &provider.email {
            if emails.len() > 1 && email_provider.max_batch() > 1 {
                let batch: Vec<OutgoingEmail> =
                    emails.iter().map(|email| (*email).clone()).collect();
                let started = Instant::now();
                let mut results = email_provider.send_batch(&batch).await.into_iter();
                self.metrics
                    .provider_latency(&provider.name, started.elapsed().as_secs_f64());
                for (index, item) in group.iter().enumerate() {
                    if let Message::Email(_) = item.message {
                        outcomes[index] = results.next();
                    }
                }
            }
        }
        for (index, item) in group.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            let started = Instant::now();
            let outcome = match (&item.message, &provider.email, &provider.sms) {
                (Message::Email(email), Some(email_provider), _) => {
                    email_provider.send(email).await
                }
                (Message::Sms(sms), _, Some(sms_provider)) => sms_provider.send(sms).await,
                _ => Outcome::Misconfigured {
                    code: "wrong_channel".into(),
                    message: format!("provider {} does not deliver this channel", provider.name),
                },
            };
            self.metrics
                .provider_latency(&provider.name, started.elapsed().as_secs_f64());
            outcomes[index] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or(Outcome::Ambiguous {
                    message: "no answer for this message".into(),
                })
            })
            .collect()
    }

    fn record_outcome(&self, round: &mut Round, item: &Ready, outcome: Outcome) {
        let job = &item.job;
        let provider = item.provider.name.as_str();
        let now = self.clock.now();
        let attempt = job.claimed.attempts + 1;
        let send_id = job.claimed.delivery_id;
        self.metrics.attempt(provider, outcome.class());
        match outcome {
            Outcome::Accepted { message_id } => {
                let recipient = job.recipient();
                let update = DeliveryUpdate {
                    delivery_id: send_id,
                    status: "sent",
                    provider_message_id: message_id.clone(),
                    recipient: recipient.clone(),
                    subject: item.subject.clone(),
                    body_sha256: Some(item.body_sha256.clone()),
                    outcome: Some("accepted".into()),
                    at: now,
                    ..DeliveryUpdate::default()
                };
                let event = audit::sent(
                    &self.topics.events,
                    job.tenant(),
                    send_id,
                    job.command(),
                    &audit::Sent {
                        provider,
                        provider_message_id: message_id.as_deref(),
                        recipient: recipient.as_deref(),
                        subject: item.subject.as_deref(),
                        body_sha256: Some(&item.body_sha256),
                    },
                    now,
                );
                round.settle(
                    update,
                    vec![event],
                    Some(Metric::Sent(job.labels.clone(), provider.to_string())),
                );
                tracing::info!(delivery = %send_id, provider, message_id = ?message_id, "Reminder sent.");
            }
            Outcome::Rejected {
                code,
                message,
                recipient_inactive,
            } => {
                self.give_up(
                    round,
                    job,
                    provider,
                    GiveUp {
                        reason: "provider_rejected",
                        code: &code,
                        message: &message,
                        dead_letter: true,
                        suppress: recipient_inactive,
                    },
                );
            }
            Outcome::Transient {
                code,
                message,
                retry_after,
            } => {
                if attempt >= i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX) {
                    self.give_up(
                        round,
                        job,
                        provider,
                        GiveUp {
                            reason: "attempts_exhausted",
                            code: &code,
                            message: &message,
                            dead_letter: false,
                            suppress: false,
                        },
                    );
                    return;
                }
                let backoff = Backoff {
                    initial: Duration::from_millis(self.settings.backoff_initial_ms),
                    max: Duration::from_millis(self.settings.backoff_max_ms),
                };
                let delay = backoff.delay(u32::try_from(attempt).unwrap_or(1), retry_after);
                let next = now + chrono::Duration::from_std(delay).unwrap_or_default();
                let update = DeliveryUpdate {
                    delivery_id: send_id,
                    status: "pending",
                    next_attempt_at: Some(next),
                    outcome: Some("transient".into()),
                    error_code: Some(code.clone()),
                    error_message: Some(message.chars().take(2000).collect()),
                    at: now,
                    ..DeliveryUpdate::default()
                };
                let failure = audit::Failure {
                    provider,
                    code: &code,
                    message: &message,
                    retryable: true,
                    attempt,
                };
                let event = audit::failed(
                    &self.topics.events,
                    job.tenant(),
                    send_id,
                    job.command(),
                    &failure,
                    now,
                );
                round.settle(
                    update,
                    vec![event],
                    Some(Metric::Retry(provider.to_string(), "transient")),
                );
                tracing::warn!(delivery = %send_id, provider, code, message, attempt, next = %next, "Delivery failed for now; retrying later.");
            }
            Outcome::Ambiguous { message } => {
                let next =
                    now + chrono::Duration::milliseconds(self.settings.reconcile_delay_ms as i64);
                let update = DeliveryUpdate {
                    delivery_id: send_id,
                    status: "pending",
                    next_attempt_at: Some(next),
                    reconcile: true,
                    outcome: Some("ambiguous".into()),
                    error_code: Some("ambiguous".into()),
                    error_message: Some(message.chars().take(2000).collect()),
                    at: now,
                    ..DeliveryUpdate::default()
                };
                let failure = audit::Failure {
                    provider,
                    code: "ambiguous",
                    message: &message,
                    retryable: true,
                    attempt,
                };
                let event = audit::failed(
                    &self.topics.events,
                    job.tenant(),
                    send_id,
                    job.command(),
                    &failure,
                    now,
                );
                round.settle(
                    update,
                    vec![event],
                    Some(Metric::Retry(provider.to_string(), "ambiguous")),
                );
                tracing::warn!(delivery = %send_id, provider, message, next = %next, "No clear answer from the provider; will ask it before sending again.");
            }
            Outcome::Misconfigured { code, message } => {
                let next =
                    now + chrono::Duration::milliseconds(self.settings.config_pause_ms as i64);
                let update = DeliveryUpdate {
                    delivery_id: send_id,
                    status: "pending",
                    next_attempt_at: Some(next),
                    uncount_attempt: true,
                    outcome: Some("config".into()),
                    error_code: Some(code),
                    error_message: Some(message.chars().take(2000).collect()),
                    at: now,
                    ..DeliveryUpdate::default()
                };
                round.settle(update, Vec::new(), None);
            }
        }
    }
}
