//! Contract tests: the examples, the schemas and the Rust types agree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::billing::*;
use crate::commands::*;
use crate::common::*;
use crate::dead_letter::{DeadLetterRecordV1, OriginalRecord};
use crate::decode::{decode, decode_value, BillingEvent, Command, DecodeErrorKind, DunningEvent};
use crate::dunning::*;
use crate::envelope::{Envelope, EventPayload};
use crate::schema::{
    find_spec, Direction, Schemas, DEAD_LETTER_SCHEMA, EVENT_SPECS, SHARED_SCHEMAS,
};

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

/// Every example file: (file name, event type or `relance.dead_letter`, version, JSON).
fn examples() -> Vec<(String, String, u32, Value)> {
    let mut examples = Vec::new();
    for entry in std::fs::read_dir(proto_dir().join("examples")).expect("proto/examples exists") {
        let path = entry.expect("directory entry").path();
        let file = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        assert!(file.ends_with(".json"), "{file}: examples are .json files");
        // <type>.v<version>[.<variant>].json
        let stem = file.trim_end_matches(".json");
        let segments: Vec<&str> = stem.split('.').collect();
        let version_at = segments
            .iter()
            .position(|segment| {
                segment.len() > 1
                    && segment.starts_with('v')
                    && segment[1..].bytes().all(|b| b.is_ascii_digit())
            })
            .unwrap_or_else(|| panic!("{file}: name must be <type>.v<version>[.<variant>].json"));
        let version: u32 = segments[version_at][1..].parse().expect("numeric version");
        let event_type = segments[..version_at].join(".");
        let text = std::fs::read_to_string(&path).expect("readable example");
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|error| panic!("{file}: not JSON: {error}"));
        examples.push((file, event_type, version, json));
    }
    examples.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!examples.is_empty());
    examples
}

fn is_dead_letter(event_type: &str) -> bool {
    event_type == "relance.dead_letter"
}

fn validate(event_type: &str, version: u32, json: &Value) -> Result<(), String> {
    let schemas = Schemas::global();
    let result = if is_dead_letter(event_type) {
        schemas.validate_dead_letter(json)
    } else {
        schemas
            .validate_event(event_type, version, json)
            .unwrap_or_else(|| panic!("no schema for {event_type} v{version}"))
    };
    result.map_err(|violations| {
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Deserialises `json` into its Rust type and serialises it back.
fn round_trip(event_type: &str, json: &Value) -> Result<Value, String> {
    fn through<E: Serialize>(
        decoded: Result<Envelope<E>, crate::DecodeError>,
    ) -> Result<Value, String> {
        decoded
            .map_err(|error| error.to_string())
            .and_then(|event| serde_json::to_value(event).map_err(|error| error.to_string()))
    }
    if is_dead_letter(event_type) {
        return serde_json::from_value::<DeadLetterRecordV1>(json.clone())
            .map_err(|error| error.to_string())
            .and_then(|record| serde_json::to_value(record).map_err(|error| error.to_string()));
    }
    let spec = EVENT_SPECS
        .iter()
        .find(|spec| spec.event_type == event_type)
        .unwrap_or_else(|| panic!("unknown type {event_type}"));
    match (spec.direction, event_type.split('.').nth(1)) {
        (Direction::Input, _) => through(decode_value::<BillingEvent>(json.clone())),
        (Direction::Output, Some("dunning")) => through(decode_value::<DunningEvent>(json.clone())),
        (Direction::Output, _) => through(decode_value::<Command>(json.clone())),
    }
}

#[test]
fn every_embedded_schema_compiles() {
    Schemas::compile().expect("schemas compile");
}

#[test]
fn every_schema_file_is_embedded_and_every_event_type_has_an_example() {
    let mut embedded: BTreeSet<String> = SHARED_SCHEMAS
        .iter()
        .map(|(file, _)| file.to_string())
        .collect();
    embedded.insert(DEAD_LETTER_SCHEMA.0.to_string());
    embedded.extend(EVENT_SPECS.iter().map(|spec| spec.file_name.to_string()));
    let on_disk: BTreeSet<String> = std::fs::read_dir(proto_dir().join("schemas"))
        .expect("proto/schemas exists")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(
        embedded, on_disk,
        "proto/schemas and the embedded list differ"
    );

    let examples = examples();
    for spec in EVENT_SPECS {
        assert!(
            examples
                .iter()
                .any(|(_, t, v, _)| t == spec.event_type && *v == spec.version),
            "{} v{} has no example in proto/examples",
            spec.event_type,
            spec.version
        );
    }
    assert!(examples.iter().any(|(_, t, _, _)| is_dead_letter(t)));
}

#[test]
fn every_schema_id_matches_its_file_name() {
    let all = SHARED_SCHEMAS
        .iter()
        .copied()
        .chain(std::iter::once(DEAD_LETTER_SCHEMA))
        .chain(EVENT_SPECS.iter().map(|spec| (spec.file_name, spec.schema)));
    for (file, text) in all {
        let schema: Value = serde_json::from_str(text).expect("schema is JSON");
        assert_eq!(
            schema["$id"],
            Value::String(format!("https://relance.dev/schemas/{file}")),
            "{file}"
        );
    }
}

#[test]
fn every_example_validates_against_its_schema() {
    for (file, event_type, version, json) in examples() {
        if let Err(violations) = validate(&event_type, version, &json) {
            panic!("{file} breaks its schema: {violations}");
        }
        if !is_dead_letter(&event_type) {
            assert_eq!(
                json["type"],
                Value::String(event_type.clone()),
                "{file}: type"
            );
            assert_eq!(
                json["schemaversion"],
                Value::from(version),
                "{file}: schemaversion"
            );
        }
    }
}

#[test]
fn every_example_round_trips_through_its_rust_type() {
    for (file, event_type, _, json) in examples() {
        let back = round_trip(&event_type, &json)
            .unwrap_or_else(|error| panic!("{file} does not deserialise: {error}"));
        assert_eq!(back, json, "{file} changes through the Rust type");
    }
}

/// Schema property paths under `root`, each with whether it is required by its parent.
/// Paths look like `data.contact.email` and `data.invoices[].number`.
struct SchemaWalker {
    files: BTreeMap<String, Value>,
}

impl SchemaWalker {
    fn new() -> Self {
        let mut files = BTreeMap::new();
        let all = SHARED_SCHEMAS
            .iter()
            .copied()
            .chain(std::iter::once(DEAD_LETTER_SCHEMA))
            .chain(EVENT_SPECS.iter().map(|spec| (spec.file_name, spec.schema)));
        for (file, text) in all {
            files.insert(file.to_string(), serde_json::from_str(text).expect("JSON"));
        }
        Self { files }
    }

    fn resolve(&self, file: &str, reference: &str) -> (String, Value) {
        let (target_file, pointer) = reference.split_once('#').expect("refs have a fragment");
        let target_file = if target_file.is_empty() {
            file
        } else {
            target_file
        };
        let document = &self.files[target_file];
        let node = document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} resolves"))
            .clone();
        (target_file.to_string(), node)
    }

    fn walk(&self, file: &str, schema: &Value, path: &str, out: &mut BTreeMap<String, bool>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            // The envelope is checked by its own properties; data is walked from the event.
            if !reference.starts_with("envelope.") {
                let (target_file, node) = self.resolve(file, reference);
                self.walk(&target_file, &node, path, out);
            }
        }
        for combinator in ["allOf"] {
            if let Some(parts) = schema.get(combinator).and_then(Value::as_array) {
                for part in parts {
                    self.walk(file, part, path, out);
                }
            }
        }
        if let Some(items) = schema.get("items") {
            self.walk(file, items, &format!("{path}[]"), out);
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            let required: BTreeSet<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|names| names.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (name, property) in properties {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                out.insert(child.clone(), required.contains(name.as_str()));
                self.walk(file, property, &child, out);
            }
        }
    }

    fn paths_of(&self, event_type: &str, version: u32) -> BTreeMap<String, bool> {
        let mut out = BTreeMap::new();
        if is_dead_letter(event_type) {
            let root = self.files[DEAD_LETTER_SCHEMA.0].clone();
            self.walk(DEAD_LETTER_SCHEMA.0, &root, "", &mut out);
        } else {
            let spec = find_spec(event_type, version).expect("spec");
            let envelope = self.files["envelope.v1.json"].clone();
            self.walk("envelope.v1.json", &envelope, "", &mut out);
            let data = self.files[spec.file_name]["$defs"]["data"].clone();
            self.walk(spec.file_name, &data, "data", &mut out);
        }
        out
    }
}

/// The property paths present in a JSON value, in the walker's notation.
fn present_paths(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                out.insert(child_path.clone());
                present_paths(child, &child_path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                present_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_schema_property_is_exercised_by_an_example() {
    let walker = SchemaWalker::new();
    let examples = examples();
    let mut types: BTreeSet<(String, u32)> = BTreeSet::new();
    for (_, event_type, version, _) in &examples {
        types.insert((event_type.clone(), *version));
    }
    for (event_type, version) in types {
        let declared = walker.paths_of(&event_type, version);
        let mut present = BTreeSet::new();
        for (_, t, v, json) in &examples {
            if *t == event_type && *v == version {
                present_paths(json, "", &mut present);
            }
        }
        let missing: Vec<&String> = declared
            .keys()
            .filter(|path| !present.contains(*path))
            .collect();
        assert!(
            missing.is_empty(),
            "{event_type} v{version}: no example sets {missing:?}, so the Rust type is not checked against them"
        );
        let undeclared: Vec<&String> = present
            .iter()
            .filter(|path| !declared.contains_key(*path))
            .collect();
        assert!(
            undeclared.is_empty(),
            "{event_type} v{version}: examples set undeclared {undeclared:?}"
        );
    }
}

/// Removes the property at `path` (walker notation) everywhere it occurs.
fn remove_path(value: &mut Value, path: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let (name, is_array) = match head.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (head, false),
    };
    let Some(map) = value.as_object_mut() else {
        return;
    };
    match rest {
        None => {
            map.remove(name);
        }
        Some(rest) => {
            let Some(child) = map.get_mut(name) else {
                return;
            };
            if is_array {
                if let Some(items) = child.as_array_mut() {
                    for item in items {
                        remove_path(item, rest);
                    }
                }
            } else {
                remove_path(child, rest);
            }
        }
    }
}

#[test]
fn properties_optional_in_the_schema_are_optional_in_rust() {
    let walker = SchemaWalker::new();
    for (file, event_type, version, json) in examples() {
        for (path, required) in walker.paths_of(&event_type, version) {
            let mut present = BTreeSet::new();
            present_paths(&json, "", &mut present);
            if required || !present.contains(&path) {
                continue;
            }
            let mut without = json.clone();
            remove_path(&mut without, &path);
            // A few optional fields are only optional one at a time (anyOf); skip what the
            // schema itself rejects.
            if validate(&event_type, version, &without).is_err() {
                continue;
            }
            if let Err(error) = round_trip(&event_type, &without) {
                panic!("{file}: the schema makes {path} optional but Rust requires it: {error}");
            }
        }
    }
}

#[test]
fn properties_required_by_the_schema_are_required_in_rust() {
    let walker = SchemaWalker::new();
    for (file, event_type, version, json) in examples() {
        for (path, required) in walker.paths_of(&event_type, version) {
            // Only parents present in the example can be tested.
            let mut present = BTreeSet::new();
            present_paths(&json, "", &mut present);
            if !required || !present.contains(&path) {
                continue;
            }
            let mut without = json.clone();
            remove_path(&mut without, &path);
            assert!(
                validate(&event_type, version, &without).is_err(),
                "{file}: {path} is required"
            );
            // Through the Rust type alone, without the schema check, it must fail too.
            let rust_accepts = if is_dead_letter(&event_type) {
                serde_json::from_value::<DeadLetterRecordV1>(without).is_ok()
            } else {
                serde_json::from_value::<Envelope<Value>>(without)
                    .is_ok_and(|envelope| data_deserialises(&event_type, version, envelope.data))
            };
            assert!(
                !rust_accepts,
                "{file}: the schema requires {path} but Rust accepts it missing"
            );
        }
    }
}

/// Whether `data` deserialises as the payload of `event_type`, without any schema check.
fn data_deserialises(event_type: &str, version: u32, data: Value) -> bool {
    use crate::decode::EventFamily;
    BillingEvent::from_data(event_type, version, data.clone())
        .map(|result| result.is_ok())
        .or_else(|| {
            Command::from_data(event_type, version, data.clone()).map(|result| result.is_ok())
        })
        .or_else(|| DunningEvent::from_data(event_type, version, data).map(|result| result.is_ok()))
        .unwrap_or_else(|| panic!("no Rust type for {event_type} v{version}"))
}

fn envelope_for<T: EventPayload>(data: T) -> Envelope<T> {
    Envelope::new(
        Id::parse("evt_1").expect("id"),
        "/billing/test",
        Id::parse("acme").expect("tenant"),
        chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time"),
        "cus_1",
        data,
    )
    .with_subject("inv_1")
}

fn assert_rust_value_meets_schema<T: EventPayload + std::fmt::Debug + PartialEq>(data: T) {
    let envelope = envelope_for(data);
    let json = serde_json::to_value(&envelope).expect("serialises");
    if let Err(violations) = validate(T::EVENT_TYPE, T::SCHEMA_VERSION, &json) {
        panic!(
            "a valid Rust {} breaks its schema: {violations}\n{json:#}",
            T::EVENT_TYPE
        );
    }
    let back: Envelope<T> = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, envelope);
}

macro_rules! rust_values_meet_their_schema {
    ($($name:ident: $type:ty),+ $(,)?) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $(
                #[test]
                fn $name(data in any::<$type>()) {
                    assert_rust_value_meets_schema(data);
                }
            )+
        }
    };
}

rust_values_meet_their_schema!(
    invoice_issued_values_meet_the_schema: InvoiceIssuedV1,
    invoice_updated_values_meet_the_schema: InvoiceUpdatedV1,
    invoice_voided_values_meet_the_schema: InvoiceVoidedV1,
    credit_note_values_meet_the_schema: CreditNoteAppliedV1,
    invoice_disputed_values_meet_the_schema: InvoiceDisputedV1,
    payment_succeeded_values_meet_the_schema: PaymentSucceededV1,
    payment_failed_values_meet_the_schema: PaymentFailedV1,
    payment_refunded_values_meet_the_schema: PaymentRefundedV1,
    customer_upserted_values_meet_the_schema: CustomerUpsertedV1,
    send_reminder_values_meet_the_schema: SendReminderV1,
    create_task_values_meet_the_schema: CreateTaskV1,
    state_changed_values_meet_the_schema: StateChangedV1,
    reminder_sent_values_meet_the_schema: ReminderSentV1,
    reminder_skipped_values_meet_the_schema: ReminderSkippedV1,
    reminder_failed_values_meet_the_schema: ReminderFailedV1,
    reminder_opened_values_meet_the_schema: ReminderOpenedV1,
    reminder_clicked_values_meet_the_schema: ReminderClickedV1,
    customer_action_values_meet_the_schema: CustomerActionV1,
    payment_attributed_values_meet_the_schema: PaymentAttributedV1,
);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dead_letter_records_meet_their_schema(record in any::<DeadLetterRecordV1>()) {
        let json = serde_json::to_value(&record).expect("serialises");
        prop_assert!(validate("relance.dead_letter", 1, &json).is_ok(), "{json:#}");
    }

    #[test]
    fn captured_records_give_back_their_bytes(
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        header in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
    ) {
        let original = OriginalRecord::capture(
            key.as_deref(),
            value.as_deref(),
            vec![("h".to_string(), header.clone())],
            Some(1),
        );
        let json = serde_json::to_value(&original).expect("serialises");
        let back: OriginalRecord = serde_json::from_value(json).expect("deserialises");
        prop_assert_eq!(back.key_bytes().expect("base64"), key);
        prop_assert_eq!(back.value_bytes().expect("base64"), value);
        prop_assert_eq!(back.headers[0].value_bytes().expect("base64"), header);
    }
}

fn example_bytes(event_type: &str) -> Value {
    examples()
        .into_iter()
        .find(|(_, t, _, _)| t == event_type)
        .map(|(_, _, _, json)| json)
        .expect("example exists")
}

fn decode_error_kind(json: &Value) -> DecodeErrorKind {
    let bytes = serde_json::to_vec(json).expect("serialises");
    decode::<BillingEvent>(&bytes)
        .expect_err("must not decode")
        .kind
}

#[test]
fn decoding_a_valid_billing_event_gives_its_typed_payload() {
    let json = example_bytes("billing.invoice.issued");
    let bytes = serde_json::to_vec(&json).expect("serialises");
    let event = decode::<BillingEvent>(&bytes).expect("decodes");
    assert_eq!(event.tenant.as_str(), "acme");
    match event.data {
        BillingEvent::InvoiceIssued(invoice) => {
            assert_eq!(invoice.total.amount_minor(), 123_456);
            assert_eq!(invoice.total.currency().as_str(), "EUR");
        }
        other => panic!("decoded as {other:?}"),
    }
}

#[test]
fn each_kind_of_bad_record_is_reported_with_its_reason() {
    let good = example_bytes("billing.invoice.issued");

    let not_json = decode::<BillingEvent>(b"\xff\xfe{not json").expect_err("bad bytes");
    assert_eq!(not_json.kind, DecodeErrorKind::InvalidJson);
    assert_eq!(not_json.kind.code(), "invalid_json");

    assert_eq!(
        decode_error_kind(&Value::from(42)),
        DecodeErrorKind::NotACloudEvent
    );

    let mut no_specversion = good.clone();
    no_specversion
        .as_object_mut()
        .expect("object")
        .remove("specversion");
    assert_eq!(
        decode_error_kind(&no_specversion),
        DecodeErrorKind::NotACloudEvent
    );

    let mut old_spec = good.clone();
    old_spec["specversion"] = Value::from("0.3");
    assert_eq!(
        decode_error_kind(&old_spec),
        DecodeErrorKind::UnsupportedSpecVersion
    );

    let mut unknown_type = good.clone();
    unknown_type["type"] = Value::from("billing.invoice.teleported");
    assert_eq!(
        decode_error_kind(&unknown_type),
        DecodeErrorKind::UnknownEventType
    );

    // A real event type, but not one a billing consumer handles.
    let reminder = example_bytes("relance.reminder.send");
    assert_eq!(
        decode_error_kind(&reminder),
        DecodeErrorKind::UnknownEventType
    );

    let mut future_version = good.clone();
    future_version["schemaversion"] = Value::from(2);
    let error = decode::<BillingEvent>(&serde_json::to_vec(&future_version).expect("json"))
        .expect_err("v2 unsupported");
    assert_eq!(error.kind, DecodeErrorKind::UnsupportedSchemaVersion);
    assert_eq!(error.identity.tenant.as_ref().map(Id::as_str), Some("acme"));
    assert_eq!(
        error.identity.event_type.as_deref(),
        Some("billing.invoice.issued")
    );

    let mut negative = good.clone();
    negative["data"]["total"]["amount_minor"] = Value::from(-500);
    let error = decode::<BillingEvent>(&serde_json::to_vec(&negative).expect("json"))
        .expect_err("negative amount");
    assert_eq!(error.kind, DecodeErrorKind::InvalidAmount);
    assert_eq!(error.kind.code(), "invalid_amount");
    assert!(
        error.detail.contains("/data/total/amount_minor"),
        "{}",
        error.detail
    );

    let mut overflowing = good.clone();
    overflowing["data"]["total"]["amount_minor"] = serde_json::json!(9_007_199_254_740_992_u64);
    assert_eq!(
        decode_error_kind(&overflowing),
        DecodeErrorKind::InvalidAmount
    );

    let mut float_amount = good.clone();
    float_amount["data"]["total"]["amount_minor"] = Value::from(12.5);
    assert_eq!(
        decode_error_kind(&float_amount),
        DecodeErrorKind::InvalidAmount
    );

    let mut amount_and_more = good.clone();
    amount_and_more["data"]["total"]["amount_minor"] = Value::from(-1);
    amount_and_more["data"]["number"] = Value::from("");
    assert_eq!(
        decode_error_kind(&amount_and_more),
        DecodeErrorKind::SchemaViolation
    );

    let mut local_time = good.clone();
    local_time["time"] = Value::from("2026-11-02T10:15:00+01:00");
    assert_eq!(
        decode_error_kind(&local_time),
        DecodeErrorKind::SchemaViolation
    );

    let mut extra_field = good;
    extra_field["data"]["surprise"] = Value::from(true);
    assert_eq!(
        decode_error_kind(&extra_field),
        DecodeErrorKind::SchemaViolation
    );
}

#[test]
fn a_nul_character_is_reported_with_the_path_of_its_string() {
    let good = example_bytes("billing.invoice.issued");
    assert!(decode::<BillingEvent>(&serde_json::to_vec(&good).expect("json")).is_ok());

    let mut nested = good;
    nested["data"]["contact"]["last_name"] = Value::from("Dur\u{0}and");
    let error = decode::<BillingEvent>(&serde_json::to_vec(&nested).expect("json"))
        .expect_err("NUL in a nested string");
    assert_eq!(error.kind, DecodeErrorKind::InvalidText);
    assert!(
        error
            .detail
            .contains(" /data/contact/last_name holds a NUL"),
        "{}",
        error.detail
    );
    assert_eq!(
        error.identity.id.as_ref().map(Id::as_str),
        Some("evt_01JD3K8Z7Q")
    );
}

#[test]
fn constrained_values_reject_what_the_contract_rejects() {
    assert!(Currency::parse("EUR").is_ok());
    assert!(Currency::parse("eur").is_err());
    assert!(Currency::parse("EURO").is_err());
    assert!(Money::new(-1, Currency::parse("EUR").expect("currency")).is_err());
    assert!(Money::new(
        MAX_SAFE_INTEGER + 1,
        Currency::parse("EUR").expect("currency")
    )
    .is_err());
    assert!(Locale::parse("fr-FR").is_ok());
    assert!(Locale::parse("zh-Hans-CN").is_ok());
    assert!(Locale::parse("es-419").is_ok());
    assert!(Locale::parse("fr_FR").is_err());
    assert_eq!(Locale::parse("fr-FR").expect("locale").language(), "fr");
    assert!(Phone::parse("+33612345678").is_ok());
    assert!(Phone::parse("0612345678").is_err());
    assert!(Email::parse("a@b.fr").is_ok());
    assert!(Email::parse("no-at-sign").is_err());
    assert!(Id::parse("has space").is_err());
    assert!(Id::parse("").is_err());
    assert!(Url::parse("javascript:alert(1)").is_err());
    assert!(TimeZoneName::parse("Europe/Paris").is_ok());
    assert!(TimeZoneName::parse("/Paris").is_err());
    assert!(Revision::new(0).is_err());
}

#[test]
fn every_example_is_shown_in_the_events_documentation() {
    let docs =
        std::fs::read_to_string(proto_dir().join("../docs/events.md")).expect("docs/events.md");
    for entry in std::fs::read_dir(proto_dir().join("examples")).expect("examples") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("example");
        assert!(
            docs.contains(text.trim_end()),
            "docs/events.md does not show {} as it is; copy the file's content into its section",
            path.display()
        );
    }
}
