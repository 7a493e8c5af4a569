//! The configured providers, by name, each with its circuit breaker (per process) and the
//! size of its shared token bucket (kept in the database, so replicas share one rate limit).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relance_channels::resilience::{Allowance, BreakerState, CircuitBreaker, SharedBucket};
use relance_channels::{
    EmailProvider, FileProvider, Lookup, PostmarkConfig, PostmarkProvider, ProviderError,
    SendGridConfig, SendGridProvider, SmsProvider, TwilioConfig, TwilioProvider,
};
use relance_config::{ProviderKind, ProviderSettings, SenderSettings};
use relance_contracts::commands::MessageChannel;
use secrecy::SecretString;

/// One configured provider.
pub struct Provider {
    pub name: String,
    pub email: Option<Arc<dyn EmailProvider>>,
    pub sms: Option<Arc<dyn SmsProvider>>,
    /// The provider's rate limit, drawn on before deliveries are claimed.
    pub bucket: SharedBucket,
    /// The longest a request may take.
    pub timeout: Duration,
    /// Messages sent at once when the provider has no batch endpoint.
    pub concurrency: usize,
    breaker: Mutex<CircuitBreaker>,
}

impl Provider {
    /// How many messages the breaker lets through now, out of `batch`.
    pub fn allowance(&self, batch: u32) -> Allowance {
        self.breaker
            .lock()
            .map_or(Allowance::Send(batch), |breaker| {
                breaker.allowance(Instant::now(), batch)
            })
    }

    /// How many messages go in one wave: a batch request's worth, or as many calls at once as
    /// the provider takes.
    pub fn wave_size(&self) -> usize {
        self.email
            .as_ref()
            .map(|email| email.max_batch())
            .filter(|size| *size > 1)
            .unwrap_or(self.concurrency)
            .max(1)
    }

    /// Asks the provider whether it has a message with this send id.
    pub async fn lookup(&self, channel: MessageChannel, send_id: uuid::Uuid) -> Lookup {
        match channel {
            MessageChannel::Email => match &self.email {
                Some(email) => email.lookup(send_id).await,
                None => Lookup::Unsupported,
            },
            MessageChannel::Sms => match &self.sms {
                Some(sms) => sms.lookup(send_id).await,
                None => Lookup::Unsupported,
            },
        }
    }

    /// `Ok` when the circuit lets a call through, `Err(wait)` otherwise.
    ///
    /// # Errors
    /// How long to hold messages before trying again.
    pub fn permit(&self) -> Result<(), Duration> {
        self.breaker
            .lock()
            .map_or(Ok(()), |mut breaker| breaker.permit(Instant::now()))
    }

    /// Whether the circuit is closed now (for logs and metrics after a failure).
    pub fn record(&self, healthy: bool) -> bool {
        let Ok(mut breaker) = self.breaker.lock() else {
            return true;
        };
        let now = Instant::now();
        if healthy {
            breaker.record_success();
        } else {
            breaker.record_failure(now);
        }
        breaker.state(now) == BreakerState::Closed
    }

    /// Holds every message for `duration` (a configuration error).
    pub fn pause(&self, duration: Duration) {
        if let Ok(mut breaker) = self.breaker.lock() {
            breaker.pause(Instant::now(), duration);
        }
    }
}

/// A provider's email and SMS sides.
type Channels = (Option<Arc<dyn EmailProvider>>, Option<Arc<dyn SmsProvider>>);

/// Every configured provider.
pub struct Providers {
    by_name: BTreeMap<String, Arc<Provider>>,
}

fn secret(value: Option<&SecretString>) -> SecretString {
    value
        .cloned()
        .unwrap_or_else(|| SecretString::from(String::new()))
}

fn non_empty(value: &str) -> Option<String> {
    Some(value.trim().to_string()).filter(|value| !value.is_empty())
}

impl Providers {
    /// Builds every provider of `[sender.providers]`.
    ///
    /// # Errors
    /// [`ProviderError`] naming the provider that cannot be built.
    pub fn build(settings: &SenderSettings) -> Result<Self, ProviderError> {
        let mut by_name = BTreeMap::new();
        for (name, config) in &settings.providers {
            let provider = Self::build_one(name, config, settings).map_err(|error| {
                ProviderError::Config(format!("sender.providers.{name}: {error}"))
            })?;
            by_name.insert(name.clone(), Arc::new(provider));
        }
        Ok(Self { by_name })
    }

    fn build_one(
        name: &str,
        config: &ProviderSettings,
        settings: &SenderSettings,
    ) -> Result<Provider, ProviderError> {
        let timeout = match config.kind {
            // A local write, not a call that can hang.
            ProviderKind::File => Duration::ZERO,
            _ => Duration::from_millis(config.timeout_ms),
        };
        let (email, sms): Channels = match config.kind {
            ProviderKind::File => {
                let provider = Arc::new(FileProvider::new(&config.folder)?);
                (Some(provider.clone()), Some(provider))
            }
            ProviderKind::Postmark => (
                Some(Arc::new(PostmarkProvider::new(PostmarkConfig {
                    base_url: config.api_url(),
                    server_token: secret(config.server_token.as_ref()),
                    message_stream: config.message_stream.clone(),
                    timeout,
                    track_opens: config.track_opens,
                })?)),
                None,
            ),
            ProviderKind::Sendgrid => (
                Some(Arc::new(SendGridProvider::new(SendGridConfig {
                    base_url: config.api_url(),
                    api_key: secret(config.api_key.as_ref()),
                    timeout,
                    sandbox: config.sandbox,
                })?)),
                None,
            ),
            ProviderKind::Twilio => (
                None,
                Some(Arc::new(TwilioProvider::new(TwilioConfig {
                    base_url: config.api_url(),
                    account_sid: config.account_sid.clone(),
                    auth_token: secret(config.auth_token.as_ref()),
                    from: non_empty(&config.from),
                    messaging_service_sid: non_empty(&config.messaging_service_sid),
                    status_callback: non_empty(&config.status_callback),
                    timeout,
                })?)),
            ),
        };
        Ok(Provider {
            name: name.to_string(),
            email,
            sms,
            bucket: SharedBucket::for_rate(config.rate_per_second),
            timeout,
            concurrency: config.concurrency.max(1) as usize,
            breaker: Mutex::new(CircuitBreaker::new(
                settings.breaker_threshold,
                Duration::from_millis(settings.breaker_cooldown_ms),
            )),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        self.by_name.get(name).cloned()
    }

    /// Every provider, in name order.
    pub fn all(&self) -> Vec<Arc<Provider>> {
        self.by_name.values().cloned().collect()
    }
}
