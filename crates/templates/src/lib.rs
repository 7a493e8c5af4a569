//! Reminder templates: what a customer reads.
//!
//! Templates are Tera sources in TOML files (subject, body paragraphs, call to action; or an
//! SMS text), laid out by a per-locale HTML and text layout. [`TemplateStore`] loads a folder,
//! resolves a template with fallbacks (tenant → default; locale → language → English) and
//! renders it with HTML escaping on. [`lint`] checks the writing rules of good dunning
//! practice. [`format`] writes money and dates the way each locale does.

mod context;
pub mod format;
mod lint;
mod store;

pub use context::{Company, Contact, InvoiceLine, Links, MessageContext, StepInfo};
pub use lint::{lint, Finding, MAX_SMS_CHARS, MAX_SUBJECT_CHARS};
pub use store::{escape_html, Channel, RenderedMessage, TemplateError, TemplateStore, Texts};
