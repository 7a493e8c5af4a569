//! Rust types for relance's event contracts.
//!
//! The contracts themselves are language-neutral JSON Schemas under `proto/schemas/`, with an
//! example of every event under `proto/examples/`. This crate mirrors them as serde types and
//! embeds the schemas, so a consumer can validate a record against the exact contract before
//! trusting it:
//!
//! - [`envelope`]: the CloudEvents 1.0 envelope every relance event travels in;
//! - [`billing`]: the input events a billing system publishes;
//! - [`commands`]: what relance's scheduler asks its sender and people to do;
//! - [`dunning`]: what relance reports about dunning (state changes, deliveries, interactions);
//! - [`dead_letter`]: the record written to the dead-letter topic;
//! - [`schema`] and [`decode`]: the embedded schemas and the decoder that applies them.
//!
//! The types and the schemas cannot drift apart silently: the crate's tests validate every
//! example against its schema and round-trip it through the Rust type, check that every
//! property a schema declares is exercised by an example and optional in Rust when optional in
//! the schema, and validate arbitrary Rust values against the schemas (property tests).

pub mod billing;
pub mod commands;
pub mod common;
pub mod dead_letter;
pub mod decode;
pub mod dunning;
pub mod envelope;
pub mod kafka_binding;
pub mod schema;

#[cfg(test)]
mod arbitrary;
#[cfg(test)]
mod tests;

pub use common::*;
pub use decode::{
    decode, BillingEvent, Command, DecodeError, DecodeErrorKind, DecodedEvent, DunningEvent,
    EventFamily,
};
pub use envelope::{Envelope, EventPayload, CLOUDEVENTS_CONTENT_TYPE, SPEC_VERSION};
pub use kafka_binding::{decode_record, ContentMode, KeyCheck};
