//! The JSON Schemas of `proto/schemas/`, embedded in the binary, and their compiled validators.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::{Draft, Registry, Validator};
use serde_json::Value;

use crate::envelope::SCHEMA_BASE_URI;

/// Which topic family an event type belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Published by a billing system, consumed by relance.
    Input,
    /// Published by relance.
    Output,
}

/// One event type and version of the contracts, with its schema.
#[derive(Debug, Clone, Copy)]
pub struct EventSpec {
    /// The CloudEvents `type`.
    pub event_type: &'static str,
    /// The schema version (`schemaversion`).
    pub version: u32,
    /// Who publishes it.
    pub direction: Direction,
    /// The schema file name under `proto/schemas/`.
    pub file_name: &'static str,
    /// The schema text.
    pub schema: &'static str,
}

macro_rules! spec {
    ($type:literal, $version:literal, $direction:ident) => {
        EventSpec {
            event_type: $type,
            version: $version,
            direction: Direction::$direction,
            file_name: concat!($type, ".v", $version, ".json"),
            schema: include_str!(concat!(
                "../../../proto/schemas/",
                $type,
                ".v",
                $version,
                ".json"
            )),
        }
    };
}

/// Every event type and version of the contracts.
pub const EVENT_SPECS: &[EventSpec] = &[
    spec!("billing.invoice.issued", 1, Input),
    spec!("billing.invoice.updated", 1, Input),
    spec!("billing.invoice.voided", 1, Input),
    spec!("billing.credit_note.applied", 1, Input),
    spec!("billing.invoice.disputed", 1, Input),
    spec!("billing.payment.succeeded", 1, Input),
    spec!("billing.payment.failed", 1, Input),
    spec!("billing.payment.refunded", 1, Input),
    spec!("billing.customer.upserted", 1, Input),
    spec!("relance.reminder.send", 1, Output),
    spec!("relance.task.create", 1, Output),
    spec!("relance.dunning.state_changed", 1, Output),
    spec!("relance.dunning.reminder_sent", 1, Output),
    spec!("relance.dunning.reminder_skipped", 1, Output),
    spec!("relance.dunning.reminder_failed", 1, Output),
    spec!("relance.dunning.reminder_opened", 1, Output),
    spec!("relance.dunning.reminder_clicked", 1, Output),
    spec!("relance.dunning.customer_action", 1, Output),
    spec!("relance.dunning.payment_attributed", 1, Output),
];

/// Schemas other schemas refer to: (file name, text).
pub const SHARED_SCHEMAS: &[(&str, &str)] = &[
    (
        "common.v1.json",
        include_str!("../../../proto/schemas/common.v1.json"),
    ),
    (
        "envelope.v1.json",
        include_str!("../../../proto/schemas/envelope.v1.json"),
    ),
];

/// The dead-letter record schema file name and text.
pub const DEAD_LETTER_SCHEMA: (&str, &str) = (
    "relance.dead_letter.v1.json",
    include_str!("../../../proto/schemas/relance.dead_letter.v1.json"),
);

/// The spec of `event_type` at `version`, if the contracts have it.
pub fn find_spec(event_type: &str, version: u32) -> Option<&'static EventSpec> {
    EVENT_SPECS
        .iter()
        .find(|spec| spec.event_type == event_type && spec.version == version)
}

/// The versions of `event_type` the contracts have (empty for an unknown type).
pub fn known_versions(event_type: &str) -> Vec<u32> {
    EVENT_SPECS
        .iter()
        .filter(|spec| spec.event_type == event_type)
        .map(|spec| spec.version)
        .collect()
}

/// One way an instance breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON pointer to the offending value (`/data/total/amount_minor`).
    pub instance_path: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.instance_path.is_empty() {
            "/"
        } else {
            &self.instance_path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Why the embedded schemas could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("schema {file} does not compile: {reason}")]
pub struct SchemaCompileError {
    pub file: &'static str,
    pub reason: String,
}

/// The compiled validators of every embedded schema.
pub struct Schemas {
    events: HashMap<(&'static str, u32), Validator>,
    dead_letter: Validator,
}

/// At most this many violations are reported for one instance: enough to fix it, short enough
/// for a log line and a dead-letter record.
const MAX_REPORTED_VIOLATIONS: usize = 5;

impl Schemas {
    /// Compiles every embedded schema.
    ///
    /// # Errors
    /// [`SchemaCompileError`] when a schema is not valid JSON or not a valid JSON Schema.
    pub fn compile() -> Result<Self, SchemaCompileError> {
        let mut shared = Vec::with_capacity(SHARED_SCHEMAS.len());
        for (file, text) in SHARED_SCHEMAS {
            shared.push((format!("{SCHEMA_BASE_URI}{file}"), parse(file, text)?));
        }
        let registry = Registry::new()
            .extend(shared)
            .and_then(|builder| builder.prepare())
            .map_err(|error| SchemaCompileError {
                file: "common.v1.json",
                reason: error.to_string(),
            })?;
        let build =
            |file: &'static str, text: &'static str| -> Result<Validator, SchemaCompileError> {
                let schema = parse(file, text)?;
                jsonschema::options()
                    .with_draft(Draft::Draft202012)
                    .should_validate_formats(true)
                    .with_registry(&registry)
                    .build(&schema)
                    .map_err(|error| SchemaCompileError {
                        file,
                        reason: error.to_string(),
                    })
            };
        let mut events = HashMap::with_capacity(EVENT_SPECS.len());
        for spec in EVENT_SPECS {
            events.insert(
                (spec.event_type, spec.version),
                build(spec.file_name, spec.schema)?,
            );
        }
        let dead_letter = build(DEAD_LETTER_SCHEMA.0, DEAD_LETTER_SCHEMA.1)?;
        Ok(Self {
            events,
            dead_letter,
        })
    }

    /// The schemas compiled once for the whole process.
    ///
    /// # Panics
    /// If the embedded schemas do not compile. They are part of the binary and the crate's
    /// tests compile them, so this cannot happen in a tested build.
    pub fn global() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| {
            #[allow(clippy::expect_used)]
            Schemas::compile().expect("embedded schemas compile: checked by the contracts tests")
        })
    }

    /// Validates a whole event (envelope and data) against the schema of `event_type` at
    /// `version`. Returns `None` when the contracts have no such type and version.
    pub fn validate_event(
        &self,
        event_type: &str,
        version: u32,
        instance: &Value,
    ) -> Option<Result<(), Vec<SchemaViolation>>> {
        let spec = find_spec(event_type, version)?;
        let validator = self.events.get(&(spec.event_type, spec.version))?;
        Some(collect_violations(validator, instance))
    }

    /// Validates a dead-letter record.
    ///
    /// # Errors
    /// The violations found.
    pub fn validate_dead_letter(&self, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
        collect_violations(&self.dead_letter, instance)
    }
}

fn parse(file: &'static str, text: &str) -> Result<Value, SchemaCompileError> {
    serde_json::from_str(text).map_err(|error| SchemaCompileError {
        file,
        reason: error.to_string(),
    })
}

fn collect_violations(validator: &Validator, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
    if validator.is_valid(instance) {
        return Ok(());
    }
    let violations: Vec<SchemaViolation> = validator
        .iter_errors(instance)
        .take(MAX_REPORTED_VIOLATIONS)
        .map(|error| SchemaViolation {
            instance_path: error.instance_path().to_string(),
            message: error.to_string(),
        })
        .collect();
    Err(violations)
}
