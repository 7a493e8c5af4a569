//! A billing system, simulated: realistic event streams for many customers, as JSON envelopes.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};

/// A small deterministic random generator, so a failing stream can be reproduced.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One event to publish: its topic key (customer id), its topic kind and its JSON.
#[derive(Debug, Clone)]
pub struct Published {
    pub topic: TopicKind,
    pub key: String,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Invoices,
    Payments,
    Customers,
}

pub fn envelope(
    event_type: &str,
    id: &str,
    tenant: &str,
    customer: &str,
    time: DateTime<Utc>,
    data: Value,
) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": format!("/billing/{tenant}"),
        "type": event_type,
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "datacontenttype": "application/json",
        "tenant": tenant,
        "schemaversion": 1,
        "partitionkey": customer,
        "data": data,
    })
}

fn money(amount: i64, currency: &str) -> Value {
    json!({"amount_minor": amount, "currency": currency})
}

fn day(base: NaiveDate, offset: i64) -> String {
    (base + Duration::days(offset))
        .format("%Y-%m-%d")
        .to_string()
}

/// A stream of about `customers` × 33 events for tenant `tenant`, with duplicates and events out
/// of order, all of which a correct ingestor applies (no event is invalid or refused).
pub fn stream(seed: u64, tenant: &str, customers: usize) -> Vec<Published> {
    let mut rng = Rng::new(seed);
    let base_time = Utc
        .with_ymd_and_hms(2026, 9, 1, 8, 0, 0)
        .single()
        .unwrap_or_default();
    let base_day = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default();
    let mut out = Vec::new();
    let mut counter = 0u64;
    let mut next_id = |prefix: &str| {
        counter += 1;
        format!("{prefix}-{seed}-{counter}")
    };
    for customer_index in 0..customers {
        let customer = format!("{tenant}-cus-{customer_index}");
        let currency = if customer_index % 7 == 0 {
            "USD"
        } else {
            "EUR"
        };
        let mut events: Vec<Published> = Vec::new();
        let mut time = base_time + Duration::minutes(customer_index as i64);
        let mut tick = |rng: &mut Rng| {
            time += Duration::minutes(1 + rng.below(600) as i64);
            time
        };
        // Two profile versions; the newer may be published first.
        let profiles: Vec<Published> = (1..=2)
            .map(|revision| Published {
                topic: TopicKind::Customers,
                key: customer.clone(),
                value: envelope(
                    "billing.customer.upserted",
                    &next_id("cu"),
                    tenant,
                    &customer,
                    tick(&mut rng),
                    json!({
                        "customer_id": customer, "revision": revision,
                        "legal_name": format!("Customer {customer_index} rev {revision}"),
                        "contact": {"first_name": "Camille", "last_name": format!("Durand{customer_index}"), "email": format!("c{customer_index}@example.com")},
                        "locale": if customer_index % 2 == 0 { "fr-FR" } else { "en-GB" },
                        "timezone": "Europe/Paris", "country": "FR",
                        "segment": {"vip": customer_index % 5 == 0, "risk_level": "medium", "tags": ["simulated"], "preferred_channel": "email"}
                    }),
                ),
            })
            .collect();
        if rng.chance(40) {
            events.extend(profiles.into_iter().rev());
        } else {
            events.extend(profiles);
        }
        let invoice_count = 3 + rng.below(4) as usize;
        for invoice_index in 0..invoice_count {
            let invoice = format!("{customer}-inv-{invoice_index}");
            let total = 1_000 + rng.below(500_000) as i64;
            let issued_offset = rng.below(60) as i64;
            let mut invoice_events: Vec<Published> = Vec::new();
            let invoice_event = |event_type: &str, id: String, time, data: Value| Published {
                topic: if event_type.starts_with("billing.payment") {
                    TopicKind::Payments
                } else {
                    TopicKind::Invoices
                },
                key: customer.clone(),
                value: envelope(event_type, &id, tenant, &customer, time, data),
            };
            invoice_events.push(invoice_event(
                "billing.invoice.issued",
                next_id("iss"),
                tick(&mut rng),
                json!({
                    "invoice_id": invoice, "customer_id": customer, "number": format!("F-{invoice_index}"),
                    "issued_on": day(base_day, issued_offset), "due_on": day(base_day, issued_offset + 30),
                    "total": money(total, currency), "revision": 1,
                    "payment_url": format!("https://pay.example.com/{invoice}")
                }),
            ));
            let mut current_total = total;
            if rng.chance(40) {
                // Two updates; the older one may arrive after the newer one.
                let first = invoice_event(
                    "billing.invoice.updated",
                    next_id("upd"),
                    tick(&mut rng),
                    json!({
                        "invoice_id": invoice, "customer_id": customer, "revision": 2,
                        "due_on": day(base_day, issued_offset + 45)
                    }),
                );
                current_total = total + 100 * rng.below(50) as i64;
                let second = invoice_event(
                    "billing.invoice.updated",
                    next_id("upd"),
                    tick(&mut rng),
                    json!({
                        "invoice_id": invoice, "customer_id": customer, "revision": 3,
                        "total": money(current_total, currency), "due_on": day(base_day, issued_offset + 40)
                    }),
                );
                if rng.chance(50) {
                    invoice_events.push(second);
                    invoice_events.push(first);
                } else {
                    invoice_events.push(first);
                    invoice_events.push(second);
                }
            }
            if rng.chance(25) {
                invoice_events.push(invoice_event("billing.credit_note.applied", next_id("cn"), tick(&mut rng), json!({
                    "credit_note_id": next_id("credit"), "invoice_id": invoice, "customer_id": customer,
                    "amount": money(rng.below(current_total as u64 / 2) as i64, currency)
                })));
            }
            if rng.chance(15) {
                let dispute = next_id("dispute");
                invoice_events.push(invoice_event("billing.invoice.disputed", next_id("dsp"), tick(&mut rng), json!({
                    "dispute_id": dispute, "invoice_id": invoice, "customer_id": customer, "status": "opened", "reason": "Wrong quantity"
                })));
                if rng.chance(60) {
                    invoice_events.push(invoice_event("billing.invoice.disputed", next_id("dsp"), tick(&mut rng), json!({
                        "dispute_id": dispute, "invoice_id": invoice, "customer_id": customer, "status": "resolved", "resolution": "in_favour_of_merchant"
                    })));
                }
            }
            if rng.chance(10) {
                invoice_events.push(invoice_event("billing.payment.failed", next_id("pf"), tick(&mut rng), json!({
                    "payment_id": next_id("pay"), "invoice_id": invoice, "customer_id": customer,
                    "amount": money(current_total, currency), "failed_at": tick(&mut rng).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "failure_code": "card_declined", "recurring": true, "attempt": 1
                })));
            }
            if rng.chance(8) {
                invoice_events.push(invoice_event(
                    "billing.invoice.voided",
                    next_id("void"),
                    tick(&mut rng),
                    json!({
                        "invoice_id": invoice, "customer_id": customer, "revision": 4
                    }),
                ));
            } else {
                let payments = rng.below(3);
                let mut remaining = current_total;
                for _ in 0..payments {
                    let amount = if remaining <= 0 {
                        1
                    } else {
                        1 + rng.below(remaining as u64) as i64
                    };
                    remaining -= amount;
                    let payment = next_id("pay");
                    let paid_at = tick(&mut rng);
                    invoice_events.push(invoice_event("billing.payment.succeeded", next_id("ps"), paid_at, json!({
                        "payment_id": payment, "invoice_id": invoice, "customer_id": customer,
                        "amount": money(amount, currency), "paid_at": paid_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "method": "bank_transfer"
                    })));
                    if rng.chance(10) {
                        invoice_events.push(invoice_event("billing.payment.refunded", next_id("rf"), tick(&mut rng), json!({
                            "refund_id": next_id("refund"), "payment_id": payment, "invoice_id": invoice, "customer_id": customer,
                            "amount": money(amount, currency), "kind": if rng.chance(50) { "refund" } else { "chargeback" },
                            "refunded_at": tick(&mut rng).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        })));
                    }
                }
                if rng.chance(50) && remaining > 0 {
                    let paid_at = tick(&mut rng);
                    invoice_events.push(invoice_event("billing.payment.succeeded", next_id("ps"), paid_at, json!({
                        "payment_id": next_id("pay"), "invoice_id": invoice, "customer_id": customer,
                        "amount": money(remaining, currency), "paid_at": paid_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    })));
                }
            }
            // Out of order: sometimes a payment or dispute comes before its invoice.
            if invoice_events.len() > 2 && rng.chance(20) {
                let moved =
                    invoice_events.remove(1 + rng.below(invoice_events.len() as u64 - 1) as usize);
                invoice_events.insert(0, moved);
            }
            events.extend(invoice_events);
        }
        // Duplicates: redeliveries of the same event, anywhere later in the stream.
        let duplicates: Vec<Published> = events.iter().filter(|_| rng.chance(6)).cloned().collect();
        for duplicate in duplicates {
            let at = rng.below(events.len() as u64 + 1) as usize;
            events.insert(at, duplicate);
        }
        out.extend(events);
    }
    out
}
