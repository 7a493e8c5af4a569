//! The dispatcher: provider by provider, takes what the rate limit and the circuit breaker allow,
//! claims that many due deliveries under a fencing token, reconciles attempts in doubt, then
//! sends in waves. Each wave is guarded in the transaction that records its attempts, and sent
//! at once. The decisions are the pure crate's (`relance_delivery`); this loads, calls and
//! stores.
//!
//! Exactly once:
//! - a claim lasts `sender.lease_ms`; a wave starts only if the provider's timeout still fits
//!   in the lease, so a dispatcher never calls a provider about a delivery it no longer holds;
//! - every write after the claim carries its token, so a dispatcher that stalled past its lease
//!   can neither record an attempt nor overwrite what the new holder recorded;
//! - the guard share-locks the customer and invoice rows and records the attempts before it
//!   commits: a payment either committed before the guard read it, or commits after the
//!   attempt was recorded (docs/providers.md states the guarantee and its limits);
//! - an attempt recorded and never settled (`sending_since`) is reconciled with the provider
//!   before anything is sent again; nothing else is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use relance_channels::{OutgoingEmail, OutgoingSms};
use relance_config::{LinkSettings, SenderSettings, TopicSettings};
use relance_contracts::commands::{MessageChannel, ReminderInvoice, SendReminderV1};
use relance_contracts::Envelope;
use relance_delivery::guard::{self, Candidate, GuardCustomer, GuardInvoice, SkipReason, Verdict};
use relance_delivery::resilience::Allowance;
use relance_delivery::transition::{self, AfterAttempt, AfterLookup, RetryPolicy};
use relance_delivery::{Lookup, Outcome};
use relance_kafka::DeadLetterWriter;
use relance_links::LinkSigner;
use relance_runtime::Clock;
use relance_storage::deliveries::{self, Claim, Routes};
use relance_storage::StorageError;
use relance_templates::TemplateStore;
use serde::Deserialize as _;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::compose;
use crate::metrics::SenderMetrics;
use crate::providers::{Provider, Providers};
use crate::settle::{self, Delivered, Job, Refusal, Settlement, Settler};

/// Time kept in hand after a provider call for recording its outcome before the lease ends.
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

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

enum Message {
    Email(OutgoingEmail),
    Sms(OutgoingSms),
}

/// A delivery the guard let through, rendered.
struct Ready {
    job: Job,
    message: Message,
    subject: Option<String>,
    body_sha256: String,
}

/// What a provider's round did.
struct RoundEnd {
    claimed: usize,
    /// It claimed all it was allowed: there may be more.
    full: bool,
    /// When it has nothing to do now, how long until it may have (a token, a closed circuit).
    wait: Option<Duration>,
}

impl RoundEnd {
    fn idle(wait: Option<Duration>) -> Self {
        Self {
            claimed: 0,
            full: false,
            wait,
        }
    }
}

impl Dispatcher {
    /// Dispatches until `shutdown`; the round in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = Duration::from_millis(self.settings.dispatch_interval_ms);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let mut more = false;
            let mut sleep = interval;
            for provider in self.providers.all() {
                if shutdown.is_cancelled() {
                    return;
                }
                match self.round(&provider).await {
                    Ok(end) => {
                        more |= end.full;
                        if let Some(wait) = end.wait {
                            sleep = sleep.min(wait.max(Duration::from_millis(10)));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(provider = %provider.name, error = ?relance_telemetry::ErrorChain(&error), "Dispatching failed; deliveries in hand are taken up again when their lease ends.");
                    }
                }
            }
            if more {
                continue;
            }
            if let Ok((due, waiting)) = deliveries::backlog(&self.pool, self.clock.now()).await {
                self.metrics.backlog(due, waiting);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// One round for every provider, once (tests drive the dispatcher with it). Returns how
    /// many deliveries were claimed.
    ///
    /// # Errors
    /// [`StorageError`] when the database fails.
    pub async fn tick(&self) -> Result<usize, StorageError> {
        let mut claimed = 0;
        for provider in self.providers.all() {
            claimed += self.round(&provider).await?.claimed;
        }
        Ok(claimed)
    }

    fn routes(&self) -> Routes {
        let settings = &self.settings;
        Routes {
            default_email: settings.identity.email_provider.clone(),
            default_sms: settings.identity.sms_provider.clone(),
            tenants: settings
                .tenants
                .keys()
                .map(|tenant| {
                    let identity = settings.identity_of(tenant);
                    (
                        tenant.clone(),
                        identity.email_provider,
                        identity.sms_provider,
                    )
                })
                .collect(),
        }
    }

    fn policy(&self) -> RetryPolicy {
        let ms = Duration::from_millis;
        RetryPolicy {
            max_attempts: self.settings.max_attempts,
            backoff: relance_delivery::resilience::Backoff {
                initial: ms(self.settings.backoff_initial_ms),
                max: ms(self.settings.backoff_max_ms),
            },
            reconcile_delay: ms(self.settings.reconcile_delay_ms),
            config_pause: ms(self.settings.config_pause_ms),
            escalate_after: ms(self.settings.reconcile_escalate_after_ms),
        }
    }

    fn settler(&self) -> Settler<'_> {
        Settler {
            events_topic: &self.topics.events,
            tasks_topic: &self.topics.tasks,
            dead_letters: &self.dead_letters,
        }
    }

    /// Takes up to `want` tokens from the provider's shared bucket.
    async fn tokens(
        &self,
        provider: &Provider,
        want: u32,
    ) -> Result<(u32, Duration), StorageError> {
        let bucket = provider.bucket;
        if !bucket.is_limited() {
            return Ok((want, Duration::ZERO));
        }
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let (tokens, at_seconds, now_seconds) =
            deliveries::lock_bucket(&mut transaction, &provider.name, bucket.burst).await?;
        let state = relance_delivery::resilience::BucketState { tokens, at_seconds };
        let draw = bucket.take(Some(state), now_seconds, want);
        deliveries::store_bucket(
            &mut transaction,
            &provider.name,
            draw.state.tokens,
            draw.state.at_seconds,
        )
        .await?;
        commit(transaction, "taking tokens").await?;
        Ok((draw.granted, draw.wait))
    }

    /// Returns tokens taken for deliveries that were not there to claim.
    async fn give_back(&self, provider: &Provider, count: u32) -> Result<(), StorageError> {
        if count == 0 || !provider.bucket.is_limited() {
            return Ok(());
        }
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let (tokens, at_seconds, now_seconds) =
            deliveries::lock_bucket(&mut transaction, &provider.name, provider.bucket.burst)
                .await?;
        let state = provider.bucket.give_back(
            relance_delivery::resilience::BucketState { tokens, at_seconds },
            now_seconds,
            count,
        );
        deliveries::store_bucket(
            &mut transaction,
            &provider.name,
            state.tokens,
            state.at_seconds,
        )
        .await?;
        commit(transaction, "returning tokens").await
    }

    /// One provider's round: what the breaker and the rate limit allow, claimed, reconciled,
    /// then sent in waves.
    async fn round(&self, provider: &Arc<Provider>) -> Result<RoundEnd, StorageError> {
        let batch = self.settings.dispatch_batch;
        let want = match provider.allowance(batch) {
            Allowance::Send(count) => count,
            Allowance::Wait(wait) => return Ok(RoundEnd::idle(Some(wait))),
        };
        let (granted, wait) = self.tokens(provider, want).await?;
        if granted == 0 {
            return Ok(RoundEnd::idle(Some(wait)));
        }
        let lease = Duration::from_millis(self.settings.lease_ms);
        let deadline = Instant::now() + lease;
        let routes = self.routes();
        let token = Uuid::new_v4();
        let claimed = deliveries::claim_due(
            &self.pool,
            &Claim {
                provider: &provider.name,
                routes: &routes,
                now: self.clock.now(),
                // A span of real time on the clock (scaled by its speed): the holder times its
                // wave in real time, so on a fast clock an unscaled lease ran out for the other
                // replicas while the holder was still sending (a message went out twice in a
                // chaos run, where every wave lost its lease).
                lease_until: self.clock.after(lease),
                limit: i64::from(granted),
                token,
            },
        )
        .await?;
        let count = u32::try_from(claimed.len()).unwrap_or(u32::MAX);
        self.give_back(provider, granted.saturating_sub(count))
            .await?;
        if claimed.is_empty() {
            return Ok(RoundEnd::idle(None));
        }
        let full = count >= want && want == batch;
        let mut unreadable = Vec::new();
        let mut jobs = Vec::with_capacity(claimed.len());
        for claimed in claimed {
            match Envelope::<SendReminderV1>::deserialize(&claimed.command) {
                Ok(envelope) => jobs.push(Job::new(claimed, envelope)),
                Err(error) => unreadable.push(settle::unreadable(
                    &claimed,
                    &error.to_string(),
                    self.clock.now(),
                )),
            }
        }
        self.commit_settlements(unreadable).await?;
        let jobs = self.reconcile(jobs, token, deadline).await?;
        let mut remaining = jobs.into_iter().peekable();
        while remaining.peek().is_some() {
            if Instant::now() + provider.timeout + LEASE_MARGIN > deadline {
                let rest: Vec<Job> = remaining.collect();
                tracing::info!(provider = %provider.name, deliveries = rest.len(), "The lease cannot cover another call to the provider; deliveries handed back.");
                self.release(&rest, token, self.clock.now()).await?;
                break;
            }
            if let Allowance::Wait(wait) = provider.allowance(batch) {
                let rest: Vec<Job> = remaining.collect();
                tracing::info!(provider = %provider.name, deliveries = rest.len(), "The provider's circuit is open; deliveries wait without spending an attempt.");
                self.release(&rest, token, self.clock.after(wait)).await?;
                break;
            }
            let wave: Vec<Job> = remaining.by_ref().take(provider.wave_size()).collect();
            // Every log line and trace of the wave names its reminders and deliveries.
            let span = tracing::info_span!(
                "sender.wave",
                provider = %provider.name,
                deliveries = wave.len(),
                reminder_ids = %wave
                    .iter()
                    .map(|job| job.command().reminder_id.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                delivery_ids = %wave
                    .iter()
                    .map(|job| job.claimed.delivery_id.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            let ready = self
                .guard_and_begin(provider, wave, token)
                .instrument(span.clone())
                .await?;
            if ready.is_empty() {
                continue;
            }
            // The guard's transaction may have waited (a slow or restarting database): a call
            // that could still be running when the lease ends would race the next holder, whose
            // question to the provider may come before this message arrives (the chaos run saw
            // one message accepted twice). Begun but not sent, their attempts are withdrawn and
            // they are handed back: the next holder sends without asking the provider (one that
            // cannot be searched would otherwise leave them in doubt, to a person).
            if Instant::now() + provider.timeout + LEASE_MARGIN > deadline {
                let begun: Vec<Uuid> = ready
                    .iter()
                    .map(|ready| ready.job.claimed.delivery_id)
                    .collect();
                let rest: Vec<Job> = remaining.by_ref().collect();
                tracing::info!(provider = %provider.name, deliveries = begun.len() + rest.len(), "The lease ran short while the guard decided; deliveries handed back unsent.");
                self.withdraw(&begun, token).await?;
                self.release(&rest, token, self.clock.now()).await?;
                break;
            }
            // Half-open: this wave is the trial (the allowance made it one message).
            let _ = provider.permit();
            let outcomes = self.send(provider, &ready).instrument(span.clone()).await;
            self.settle_outcomes(provider, &ready, outcomes)
                .instrument(span)
                .await?;
        }
        Ok(RoundEnd {
            claimed: count as usize,
            full,
            wait: None,
        })
    }

    /// Hands back deliveries whose attempt was begun but never made, due now.
    async fn withdraw(&self, ids: &[Uuid], token: Uuid) -> Result<(), StorageError> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(StorageError::Unreachable)?;
        let now = self.clock.now();
        deliveries::withdraw_attempts(&mut connection, ids, token, now, now).await?;
        Ok(())
    }

    /// Hands deliveries back without spending an attempt, due at `next`.
    async fn release(
        &self,
        jobs: &[Job],
        token: Uuid,
        next: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.claimed.delivery_id).collect();
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(StorageError::Unreachable)?;
        deliveries::release(&mut connection, &ids, token, next, self.clock.now()).await?;
        Ok(())
    }

    /// Asks the provider of each attempt in doubt whether it has the message; returns the jobs
    /// to send (nothing in doubt, or the provider has no such message).
    async fn reconcile(
        &self,
        jobs: Vec<Job>,
        token: Uuid,
        deadline: Instant,
    ) -> Result<Vec<Job>, StorageError> {
        let mut to_send = Vec::with_capacity(jobs.len());
        let mut settlements = Vec::new();
        let mut postponed = Vec::new();
        let policy = self.policy();
        for job in jobs {
            let (Some(since), Some(name)) =
                (job.claimed.sending_since, job.claimed.provider.clone())
            else {
                to_send.push(job);
                continue;
            };
            let provider = self.providers.get(&name);
            let timeout = provider
                .as_ref()
                .map_or(Duration::ZERO, |provider| provider.timeout);
            // Room for the question; the message that may follow checks again.
            if Instant::now() + timeout + LEASE_MARGIN > deadline {
                postponed.push(job);
                continue;
            }
            let lookup = match &provider {
                None => Lookup::Unsupported,
                Some(provider) => {
                    provider
                        .lookup(job.command().channel, job.claimed.delivery_id)
                        .await
                }
            };
            let result = match &lookup {
                Lookup::Found { .. } => "found",
                Lookup::NotFound => "not_found",
                Lookup::Unsupported => "unsupported",
                Lookup::Unavailable(_) => "unavailable",
            };
            self.metrics.reconciled(&name, result);
            let now = self.clock.now();
            let in_doubt_for = (now - since).to_std().unwrap_or_default();
            match transition::after_lookup(lookup, &name, in_doubt_for, &policy) {
                AfterLookup::Sent { message_id } => {
                    tracing::info!(delivery = %job.claimed.delivery_id, provider = %name, "The provider has the message of an unfinished attempt: recorded as sent.");
                    settlements.push(self.settler().sent(
                        &job,
                        Delivered {
                            provider: &name,
                            message_id,
                            subject: None,
                            body_sha256: None,
                            outcome: "reconciled",
                        },
                        now,
                    ));
                }
                AfterLookup::Send => to_send.push(job),
                AfterLookup::AskAgain { after, reason } => {
                    tracing::warn!(delivery = %job.claimed.delivery_id, provider = %name, reason = %reason, "Cannot ask the provider about an unfinished attempt yet.");
                    settlements.push(Settlement {
                        update: deliveries::DeliveryUpdate {
                            next_attempt_at: Some(self.clock.after(after)),
                            in_doubt: true,
                            outcome: Some("ambiguous".into()),
                            error_code: Some("reconcile_unavailable".into()),
                            error_message: Some(reason.chars().take(2000).collect()),
                            ..job.update("pending", now)
                        },
                        records: Vec::new(),
                        suppression: None,
                        replan: None,
                        metric: None,
                    });
                }
                AfterLookup::HandToPerson { message } => {
                    settlements.push(self.settler().unknown(&job, &name, &message, now));
                }
            }
        }
        self.commit_settlements(settlements).await?;
        if !postponed.is_empty() {
            // Still in doubt: the next claim asks again.
            self.release(&postponed, token, self.clock.now()).await?;
        }
        Ok(to_send)
    }

    /// Commits settlements in one transaction and counts those that applied.
    async fn commit_settlements(&self, settlements: Vec<Settlement>) -> Result<(), StorageError> {
        if settlements.is_empty() {
            return Ok(());
        }
        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        let applied = settle::store(&mut transaction, settlements, &self.metrics).await?;
        commit(transaction, "committing delivery outcomes").await?;
        self.committed(&applied);
        Ok(())
    }

    fn committed(&self, applied: &[Settlement]) {
        settle::count(applied, &self.metrics);
        if applied
            .iter()
            .any(|settlement| !settlement.records.is_empty())
        {
            self.relay.notify_one();
        }
    }

    /// The guard, in the transaction that records the attempts: customers and invoices are
    /// locked (customers first, as everywhere), read, judged; skips and give-ups are stored;
    /// the attempts of what goes out are recorded; then it commits. Returns what to send.
    async fn guard_and_begin(
        &self,
        provider: &Provider,
        wave: Vec<Job>,
        token: Uuid,
    ) -> Result<Vec<Ready>, StorageError> {
        let now = self.clock.now();
        let customers: Vec<(String, String)> = wave
            .iter()
            .map(|job| (job.tenant().to_string(), job.claimed.customer_id.clone()))
            .collect();
        let invoice_keys: Vec<relance_storage::Scoped> = wave
            .iter()
            .flat_map(|job| {
                job.claimed
                    .invoice_ids
                    .iter()
                    .map(|invoice_id| relance_storage::scoped(job.tenant(), invoice_id))
            })
            .collect();
        let wave_ids: Vec<Uuid> = wave.iter().map(|job| job.claimed.delivery_id).collect();
        let addresses: Vec<(String, String, String)> = wave
            .iter()
            .filter_map(|job| {
                job.recipient()
                    .map(|address| (job.tenant().to_string(), job.channel().to_string(), address))
            })
            .collect();
        let window = chrono::Duration::hours(i64::from(self.settings.frequency_cap_window_hours));

        let mut transaction = self.pool.begin().await.map_err(StorageError::Unreachable)?;
        deliveries::lock_customers_for_guard(&mut transaction, &customers).await?;
        let customers: Vec<GuardCustomer> =
            deliveries::guard_customers(&mut transaction, &customers, now - window, &wave_ids)
                .await?
                .into_iter()
                .map(|row| GuardCustomer {
                    tenant: row.tenant,
                    customer_id: row.customer_id,
                    held: row.held,
                    held_until: row.held_until,
                    sent_recently: row.sent_recently,
                    oldest_recent: row.oldest_recent,
                })
                .collect();
        // Each invoice judged on its customer's date, in the zone its reminder was planned in.
        let today_of: HashMap<(&str, &str), chrono::NaiveDate> = wave
            .iter()
            .flat_map(|job| {
                let today = job.today(now);
                let tenant = job.tenant();
                job.claimed
                    .invoice_ids
                    .iter()
                    .map(move |id| ((tenant, id.as_str()), today))
            })
            .collect();
        let invoices: Vec<GuardInvoice> =
            relance_storage::invoices::load_for_share(&mut transaction, &invoice_keys)
                .await?
                .iter()
                .filter_map(|invoice| {
                    let today =
                        today_of.get(&(invoice.tenant.as_str(), invoice.invoice_id.as_str()))?;
                    Some(GuardInvoice::of(invoice, *today))
                })
                .collect();
        // After the invoices' share locks: a payment that cancelled a reminder has committed
        // by now, or waits for this transaction and then sees its attempt.
        let reminder_ids: Vec<Uuid> = wave.iter().map(|job| job.command().reminder_id).collect();
        let cancelled =
            relance_storage::scheduling::cancelled_among(&mut transaction, &reminder_ids).await?;
        let suppressed: HashMap<(String, String, String), String> =
            deliveries::suppressions(&mut transaction, &addresses)
                .await?
                .into_iter()
                .map(|(tenant, channel, address, reason)| ((tenant, channel, address), reason))
                .collect();
        // After the locks: the attempt is recorded no earlier than the guard's reads.
        let recorded_at = self.clock.now();
        let suppression_of = |job: &Job| {
            job.recipient().and_then(|address| {
                suppressed
                    .get(&(
                        job.tenant().to_string(),
                        job.channel().to_string(),
                        address.to_lowercase(),
                    ))
                    .map(String::as_str)
            })
        };
        let candidates: Vec<Candidate<'_>> = wave
            .iter()
            .map(|job| Candidate {
                tenant: job.tenant(),
                command: job.command(),
                today: job.today(now),
                suppression: suppression_of(job),
                reminder_cancelled: cancelled.contains(&job.command().reminder_id),
            })
            .collect();
        let verdicts = guard::decide_wave(
            &candidates,
            &invoices,
            &customers,
            self.settings.frequency_cap_count,
        );
        drop(candidates);

        let mut settlements = Vec::new();
        let mut ready = Vec::new();
        for (job, verdict) in wave.into_iter().zip(verdicts) {
            let _delivery = tracing::info_span!(
                "delivery",
                delivery_id = %job.claimed.delivery_id,
                reminder_id = %job.command().reminder_id,
                tenant = %job.tenant(),
            )
            .entered();
            match verdict {
                Verdict::Skip { reason, detail } => {
                    let customer = customers.iter().find(|customer| {
                        customer.tenant == job.tenant()
                            && customer.customer_id == job.claimed.customer_id
                    });
                    let mut settlement = self.settler().skipped(&job, reason, &detail, now);
                    settlement.replan =
                        guard::replan_at(reason, customer, window, now).map(|at| settle::Replan {
                            reminder_id: job.command().reminder_id,
                            tenant: job.tenant().to_string(),
                            invoice_ids: job.claimed.invoice_ids.clone(),
                            at,
                        });
                    settlements.push(settlement);
                }
                Verdict::Send {
                    invoices: kept,
                    dropped,
                } => {
                    if !dropped.is_empty() {
                        tracing::info!(delivery = %job.claimed.delivery_id, dropped = ?dropped, "Invoices left out of a reminder: they no longer need one.");
                    }
                    match self.render(provider, job, &kept, now) {
                        Ok(item) => ready.push(item),
                        Err(settlement) => settlements.push(*settlement),
                    }
                }
            }
        }
        let to_begin: Vec<Uuid> = ready
            .iter()
            .map(|item| item.job.claimed.delivery_id)
            .collect();
        let begun = deliveries::begin_attempts(
            &mut transaction,
            &to_begin,
            token,
            &provider.name,
            recorded_at,
        )
        .await?;
        if begun.len() < ready.len() {
            self.metrics.stale_write();
            tracing::warn!(provider = %provider.name, lost = ready.len() - begun.len(), "Deliveries were claimed again after this dispatcher's lease ran out; they are not sent from here.");
            ready.retain(|item| begun.contains(&item.job.claimed.delivery_id));
        }
        let applied = settle::store(&mut transaction, settlements, &self.metrics).await?;
        commit(transaction, "recording the guard's verdicts and attempts").await?;
        self.committed(&applied);
        Ok(ready)
    }

    /// Renders a reminder the guard let through; a settlement when it cannot be.
    fn render(
        &self,
        provider: &Provider,
        job: Job,
        invoices: &[ReminderInvoice],
        now: DateTime<Utc>,
    ) -> Result<Ready, Box<Settlement>> {
        let identity = self.settings.identity_of(job.tenant());
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
            today: job.today(now),
        });
        let refuse = |job: &Job, code: &str, message: &str| {
            Box::new(self.settler().give_up(
                job,
                &provider.name,
                job.claimed.attempts + 1,
                &Refusal {
                    reason: "template_error",
                    code,
                    message,
                    dead_letter: true,
                },
                false,
                now,
            ))
        };
        let rendered = match self.templates.render(
            &identity.template_set,
            job.command().template.id.as_str(),
            &context,
        ) {
            Ok(rendered) => rendered,
            Err(error) => return Err(refuse(&job, "template_error", &error.to_string())),
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
                return Err(refuse(&job, "template_channel", &message));
            }
        };
        let Some(message) = message else {
            return Err(Box::new(self.settler().skipped(
                &job,
                SkipReason::NoContactAddress,
                "the command has no address for its channel",
                now,
            )));
        };
        Ok(Ready {
            subject: Some(rendered.subject.clone()).filter(|subject| !subject.is_empty()),
            body_sha256: compose::body_sha256(&rendered),
            job,
            message,
        })
    }

    /// Sends a wave: one batch request when the provider has a batch endpoint, otherwise every
    /// message at once. One outcome per message, in order.
    async fn send(&self, provider: &Arc<Provider>, wave: &[Ready]) -> Vec<Outcome> {
        let started = Instant::now();
        let emails: Vec<OutgoingEmail> = wave
            .iter()
            .filter_map(|item| match &item.message {
                Message::Email(email) => Some(email.clone()),
                Message::Sms(_) => None,
            })
            .collect();
        let batch_endpoint = provider
            .email
            .as_ref()
            .filter(|email| email.max_batch() > 1 && emails.len() == wave.len() && wave.len() > 1);
        let outcomes = if let Some(email) = batch_endpoint {
            let mut outcomes = email.send_batch(&emails).await;
            outcomes.resize(
                wave.len(),
                Outcome::Ambiguous {
                    message: "no answer for this message".into(),
                },
            );
            outcomes
        } else {
            let calls = wave.iter().map(|item| {
                let provider = provider.clone();
                async move {
                    match (&item.message, &provider.email, &provider.sms) {
                        (Message::Email(email), Some(sender), _) => sender.send(email).await,
                        (Message::Sms(sms), _, Some(sender)) => sender.send(sms).await,
                        _ => Outcome::Misconfigured {
                            code: "wrong_channel".into(),
                            message: format!(
                                "provider {} does not deliver this channel",
                                provider.name
                            ),
                        },
                    }
                }
            });
            futures_util::future::join_all(calls).await
        };
        self.metrics
            .provider_latency(&provider.name, started.elapsed().as_secs_f64());
        outcomes
    }

    /// Records what the provider answered for a wave, and tells the breaker.
    async fn settle_outcomes(
        &self,
        provider: &Provider,
        wave: &[Ready],
        outcomes: Vec<Outcome>,
    ) -> Result<(), StorageError> {
        let now = self.clock.now();
        let policy = self.policy();
        let mut healthy = None;
        let mut misconfigured = None;
        let mut settlements = Vec::with_capacity(wave.len());
        for (item, outcome) in wave.iter().zip(outcomes) {
            self.metrics.attempt(&provider.name, outcome.class());
            match outcome.provider_healthy() {
                Some(answer) => healthy = Some(healthy.unwrap_or(true) && answer),
                None => {
                    if let Outcome::Misconfigured { code, message } = &outcome {
                        misconfigured = Some((code.clone(), message.clone()));
                    }
                }
            }
            let job = &item.job;
            let attempt = job.claimed.attempts + 1;
            let next = transition::after_attempt(
                outcome,
                u32::try_from(attempt).unwrap_or(1),
                &policy,
                relance_delivery::resilience::random_unit(),
            );
            settlements.push(match next {
                AfterAttempt::Sent { message_id } => {
                    tracing::info!(delivery = %job.claimed.delivery_id, provider = %provider.name, message_id = ?message_id, "Reminder sent.");
                    self.settler().sent(
                        job,
                        Delivered {
                            provider: &provider.name,
                            message_id,
                            subject: item.subject.clone(),
                            body_sha256: Some(item.body_sha256.clone()),
                            outcome: "accepted",
                        },
                        now,
                    )
                }
                next => self.settler().after_attempt(
                    job,
                    &provider.name,
                    attempt,
                    next,
                    now,
                    |real| self.clock.after(real),
                ),
            });
        }
        self.commit_settlements(settlements).await?;
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
}

async fn commit(
    transaction: sqlx::Transaction<'_, sqlx::Postgres>,
    context: &'static str,
) -> Result<(), StorageError> {
    transaction
        .commit()
        .await
        .map_err(|source| StorageError::Query { context, source })
}
