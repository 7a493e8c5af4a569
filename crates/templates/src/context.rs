//! What templates can use. A template sees this one message's data and nothing else, so it
//! cannot reach another customer's.

use serde::{Deserialize, Serialize};

/// The person written to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// First and last name, when known.
    pub full_name: Option<String>,
    /// The customer's legal name.
    pub company: Option<String>,
    /// How to address them: the full name, or the company; empty only when nothing is known.
    pub greeting_name: String,
}

/// The business sending the reminder (the tenant).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Company {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<String>,
}

/// One invoice, with every value already formatted for the locale.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub number: String,
    pub issued_on: String,
    pub due_on: String,
    /// Whole days past the due date (0 when not yet due).
    pub days_late: i64,
    pub amount_due: String,
    pub total: String,
    /// Whether part of the invoice is already settled (paid or credited) and a balance remains:
    /// the message must then ask for the balance, not say that no payment arrived.
    #[serde(default)]
    pub partially_settled: bool,
    /// What is settled already (total less amount due), formatted; empty when nothing is.
    #[serde(default)]
    pub settled: String,
    pub order_reference: Option<String>,
    pub payment_url: Option<String>,
}

/// The signed links of the message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Links {
    pub pay: String,
    pub already_paid: String,
    pub dispute: String,
    pub promise: String,
    pub payment_plan: String,
    /// The tracking pixel (HTML only).
    pub pixel: String,
}

/// The step the message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepInfo {
    pub id: String,
    /// `friendly`, `firm` or `final`.
    pub tone: String,
}

/// Every variable a template can use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageContext {
    pub locale: String,
    pub contact: Contact,
    pub company: Company,
    /// The first (or only) invoice.
    pub invoice: InvoiceLine,
    /// Every invoice of the message (one, or several for a consolidated statement).
    pub invoices: Vec<InvoiceLine>,
    pub consolidated: bool,
    /// Whether any invoice of the message is partially settled.
    #[serde(default)]
    pub any_partially_settled: bool,
    /// What is due in total, formatted (`1 234,56 €`; `+`-joined for several currencies).
    pub total_due: String,
    /// The most days any invoice is late.
    pub days_late: i64,
    /// The date to pay or answer by, formatted.
    pub deadline: String,
    pub links: Links,
    /// How the customer can pay, as sentences for people.
    pub payment_options: Vec<String>,
    /// What happens if the invoice stays unpaid (final notices).
    pub consequences: Option<String>,
    pub step: StepInfo,
    /// Where to update the payment method (payment-failure messages).
    pub update_payment_method_url: Option<String>,
    /// The payment method that failed, as the customer recognises it (`Visa •••• 4242`).
    pub payment_method: Option<String>,
}

impl MessageContext {
    /// A complete example, for the lint and the golden tests: a consolidated statement of two
    /// invoices with every optional value present.
    pub fn sample(locale: &str) -> Self {
        let french = locale.starts_with("fr");
        let invoice = InvoiceLine {
            number: "F-2026-0412".into(),
            issued_on: if french {
                "2 novembre 2026"
            } else {
                "2 November 2026"
            }
            .into(),
            due_on: if french {
                "2 décembre 2026"
            } else {
                "2 December 2026"
            }
            .into(),
            days_late: 5,
            amount_due: if french {
                "734,56\u{a0}€"
            } else {
                "€734.56"
            }
            .into(),
            total: if french {
                "1\u{a0}234,56\u{a0}€"
            } else {
                "€1,234.56"
            }
            .into(),
            partially_settled: true,
            settled: if french {
                "500,00\u{a0}€"
            } else {
                "€500.00"
            }
            .into(),
            order_reference: Some("PO-77812".into()),
            payment_url: Some("https://pay.acme.example/i/inv_2026_0412".into()),
        };
        let second = InvoiceLine {
            number: "F-2026-0450".into(),
            issued_on: if french {
                "9 novembre 2026"
            } else {
                "9 November 2026"
            }
            .into(),
            due_on: if french {
                "9 décembre 2026"
            } else {
                "9 December 2026"
            }
            .into(),
            days_late: 0,
            amount_due: if french {
                "120,00\u{a0}€"
            } else {
                "€120.00"
            }
            .into(),
            total: if french {
                "120,00\u{a0}€"
            } else {
                "€120.00"
            }
            .into(),
            partially_settled: false,
            settled: String::new(),
            order_reference: None,
            payment_url: None,
        };
        let link =
            |path: &str| format!("https://relance.acme.example/l/{path}/v1.k1.SAMPLE.SIGNATURE");
        Self {
            locale: locale.into(),
            contact: Contact {
                first_name: Some("Camille".into()),
                last_name: Some("Durand".into()),
                full_name: Some("Camille Durand".into()),
                company: Some("Boulangerie Durand SARL".into()),
                greeting_name: "Camille Durand".into(),
            },
            company: Company {
                name: "Acme Logiciels".into(),
                email: "compta@acme.example".into(),
                phone: Some("+33 1 23 45 67 89".into()),
                website: Some("https://acme.example".into()),
                address: Some("12 rue de la Paix, 75002 Paris".into()),
            },
            invoice: invoice.clone(),
            invoices: vec![invoice, second],
            consolidated: true,
            any_partially_settled: true,
            total_due: if french {
                "854,56\u{a0}€"
            } else {
                "€854.56"
            }
            .into(),
            days_late: 5,
            deadline: if french {
                "14 décembre 2026"
            } else {
                "14 December 2026"
            }
            .into(),
            links: Links {
                pay: link("pay"),
                already_paid: link("already-paid"),
                dispute: link("dispute"),
                promise: link("promise"),
                payment_plan: link("payment-plan"),
                pixel: link("o"),
            },
            payment_options: if french {
                vec![
                    "par carte bancaire, en ligne".into(),
                    "par virement, en indiquant le numéro de facture".into(),
                ]
            } else {
                vec![
                    "by card, online".into(),
                    "by bank transfer, quoting the invoice number".into(),
                ]
            },
            consequences: Some(if french {
                "des pénalités de retard au taux légal et une indemnité forfaitaire de 40\u{a0}€, puis la suspension du service".into()
            } else {
                "late-payment interest at the statutory rate and a fixed fee of €40, then the suspension of the service".into()
            }),
            step: StepInfo {
                id: "first_reminder".into(),
                tone: "friendly".into(),
            },
            update_payment_method_url: Some(
                "https://pay.acme.example/billing/payment-method".into(),
            ),
            payment_method: Some(
                if french {
                    "carte Visa se terminant par 4242"
                } else {
                    "Visa card ending in 4242"
                }
                .into(),
            ),
        }
    }

    /// The other extreme, for the lint: one invoice, no optional value, a contact known only
    /// by a first name. A template must read well with this too.
    pub fn minimal(locale: &str) -> Self {
        let mut context = Self::sample(locale);
        let mut invoice = context.invoice.clone();
        invoice.order_reference = None;
        invoice.payment_url = None;
        invoice.amount_due = invoice.total.clone();
        invoice.partially_settled = false;
        invoice.settled = String::new();
        context.any_partially_settled = false;
        context.contact = Contact {
            first_name: Some("Camille".into()),
            last_name: None,
            full_name: None,
            company: None,
            greeting_name: "Camille".into(),
        };
        context.company.phone = None;
        context.company.website = None;
        context.company.address = None;
        context.total_due = invoice.amount_due.clone();
        context.invoice = invoice.clone();
        context.invoices = vec![invoice];
        context.consolidated = false;
        context.payment_options = Vec::new();
        context.consequences = None;
        context.update_payment_method_url = None;
        context.payment_method = None;
        context
    }
}
