use relance_policy::parse_policy;

use crate::default_policy;

#[test]
fn the_shipped_default_policy_is_valid() {
    let policy = default_policy();
    assert_eq!(policy.policy, "default");
    let ids: Vec<&str> = policy
        .segments
        .iter()
        .map(|segment| segment.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "vip",
            "large_amount",
            "high_risk",
            "late_payer",
            "new_customer",
            "standard"
        ]
    );
    assert!(
        policy.segments[0]
            .steps
            .iter()
            .skip(1)
            .all(|step| step.approval),
        "VIP steps after the courtesy note are approved"
    );
    assert!(policy.payment_failure.is_some());
}

fn errors_of(yaml: &str) -> Vec<String> {
    match parse_policy("tenant-acme.yaml", yaml) {
        Ok(_) => panic!("must be rejected:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn with_default(replace: &str, by: &str) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/policies/default.yaml"
    ))
    .unwrap();
    assert!(
        text.contains(replace),
        "the default policy contains {replace:?}"
    );
    text.replacen(replace, by, 1)
}

fn assert_error(errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|error| error.contains(expected)),
        "no error containing {expected:?} in {errors:#?}"
    );
}

#[test]
fn a_wrong_type_names_the_file_and_the_key() {
    let errors = errors_of(&with_default(
        "min_days_between_reminders: 3",
        "min_days_between_reminders: soon",
    ));
    assert_error(
        &errors,
        "tenant-acme.yaml: rules.min_days_between_reminders:",
    );
}

#[test]
fn an_unknown_key_is_rejected_by_name() {
    let errors = errors_of(&with_default(
        "response_deadline_days: 7",
        "response_deadline_days: 7\n  response_deadlines: 8",
    ));
    assert_error(&errors, "response_deadlines");
}

#[test]
fn steps_out_of_time_order_are_rejected_naming_the_step() {
    let errors = errors_of(&with_default(
        "{id: first_reminder, offset_days: 3, channel: email, template: first_reminder, tone: friendly, stop_on_reply: true}\n      - {id: second_reminder, offset_days: 10",
        "{id: first_reminder, offset_days: 12, channel: email, template: first_reminder, tone: friendly, stop_on_reply: true}\n      - {id: second_reminder, offset_days: 10",
    ));
    assert_error(
        &errors,
        "segments[5].steps[2].offset_days: 10 must be after the previous step's 12",
    );
}

#[test]
fn a_send_window_that_closes_before_it_opens_is_rejected() {
    let errors = errors_of(&with_default("end: \"17:30\"", "end: \"08:00\""));
    assert_error(
        &errors,
        "rules.send_window.end: 08:00 must be after start 09:00",
    );
}

#[test]
fn a_malformed_time_or_unknown_time_zone_is_rejected() {
    assert_error(
        &errors_of(&with_default("start: \"09:00\"", "start: \"9h\"")),
        "rules.send_window.start",
    );
    assert_error(
        &errors_of(&with_default(
            "default_timezone: Europe/Paris",
            "default_timezone: Mars/Olympus",
        )),
        "rules.default_timezone",
    );
}

#[test]
fn the_default_segment_must_come_last() {
    let errors = errors_of(&with_default("    when:\n      vip: true\n", ""));
    assert_error(
        &errors,
        "segments[0].when: a segment without `when` matches everyone",
    );
}

#[test]
fn an_experiment_needs_two_variants_with_weights() {
    let errors = errors_of(&with_default(
        "            - {id: date_first, template: courtesy_reminder_date_first, weight: 50}\n",
        "",
    ));
    assert_error(
        &errors,
        "experiment.variants: an experiment compares at least two variants",
    );
    let errors = errors_of(&with_default(
        "weight: 50}\n            - {id: date_first",
        "weight: 0}\n            - {id: date_first",
    ));
    assert_error(&errors, "experiment.variants[0].weight: must be at least 1");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = with_default("count: 4", "count: 0");
    let text = text.replacen("response_deadline_days: 7", "response_deadline_days: 0", 1);
    let errors = errors_of(&text);
    assert_error(&errors, "rules.max_reminders.count");
    assert_error(&errors, "rules.response_deadline_days");
}

#[test]
fn yaml_syntax_errors_say_where() {
    let errors = errors_of("policy: default\nversion: [1\n");
    assert!(errors[0].starts_with("tenant-acme.yaml: "), "{errors:?}");
    assert!(errors[0].contains("line"), "{errors:?}");
}
