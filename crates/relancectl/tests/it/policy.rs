use std::process::Command;

fn relancectl(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_relancectl"))
        .current_dir(relance_testkit::repo_root())
        .args(args)
        .output()
        .expect("relancectl runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn policy_check_accepts_the_shipped_policy_and_names_the_key_of_an_error() {
    let (code, stdout, _) = relancectl(&["policy", "check", "config/policies/default.yaml"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("valid (policy default version 1"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(relance_testkit::repo_root().join("config/policies/default.yaml"))
            .unwrap();
    let broken = dir.path().join("acme.yaml");
    std::fs::write(
        &broken,
        text.replacen("end: \"17:30\"", "end: \"07:00\"", 1),
    )
    .unwrap();
    let (code, _, stderr) = relancectl(&["policy", "check", &broken.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("acme.yaml: rules.send_window.end: 07:00 must be after start 09:00"),
        "{stderr}"
    );
}

#[test]
fn policy_simulate_prints_a_timeline_a_credit_manager_recognises() {
    let (code, stdout, stderr) = relancectl(&[
        "policy",
        "simulate",
        "--due-on",
        "2026-12-02",
        "--amount",
        "1200.00",
    ]);
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "segment standard",
        "1,200.00 EUR",
        "Mon 2026-11-30 09:00   courtesy",
        "first_reminder",
        "final_notice",
        "moved past the holiday of 2027-01-01",
        "escalation",
        "handed over to a person",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    let (code, stdout, _) = relancectl(&[
        "policy",
        "simulate",
        "--due-on",
        "2026-12-02",
        "--amount",
        "15000",
        "--vip",
        "--json",
    ]);
    assert_eq!(code, 0);
    let timeline: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let approvals = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["step"]["approval"] == true)
        .count();
    assert!(approvals >= 2, "VIP steps need approval: {stdout}");
}

#[test]
fn templates_lint_passes_on_the_shipped_templates_and_fails_on_a_broken_one() {
    let (code, stdout, stderr) = relancectl(&["templates", "lint"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("templates follow every writing rule"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let shipped = relance_testkit::repo_root().join("config/templates/default");
    for locale in ["fr", "en"] {
        let target = dir.path().join("default").join(locale);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(shipped.join(locale)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
    let first = dir.path().join("default/fr/first_reminder.toml");
    let text = std::fs::read_to_string(&first).unwrap();
    std::fs::write(
        &first,
        text.replacen("subject = '''", "subject = '''RELANCE : ", 1),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("default/en/final_notice.toml")).unwrap();
    let (code, _, stderr) =
        relancectl(&["templates", "lint", "--dir", &dir.path().to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("default/fr/first_reminder (sample context): calm_subject"),
        "{stderr}"
    );
    assert!(
        stderr.contains("config/policies/default.yaml: no template \"final_notice\"")
            || stderr.contains("template final_notice has no en version"),
        "{stderr}"
    );
}

#[test]
fn templates_render_previews_a_template() {
    let (code, stdout, stderr) = relancectl(&[
        "templates",
        "render",
        "final_notice",
        "--locale",
        "en-GB",
        "--minimal",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("Subject: Invoice F-2026-0412: final notice before collection"),
        "{stdout}"
    );
    assert!(stdout.contains("Hello Camille,"), "{stdout}");
    assert!(stderr.contains("default/en/final_notice"), "{stderr}");
}

#[test]
fn policy_check_refuses_a_template_that_does_not_exist_or_sends_on_another_channel() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(relance_testkit::repo_root().join("config/policies/default.yaml"))
            .unwrap();
    let missing = dir.path().join("missing.yaml");
    std::fs::write(
        &missing,
        text.replacen(
            "template: first_reminder_vip",
            "template: does_not_exist",
            1,
        ),
    )
    .unwrap();
    let (code, _, stderr) = relancectl(&["policy", "check", &missing.to_string_lossy()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("segment vip, step first_reminder: template does_not_exist does not exist for locale fr"),
        "{stderr}"
    );
    let wrong_channel = dir.path().join("channel.yaml");
    std::fs::write(
        &wrong_channel,
        text.replacen(
            "{id: sms_reminder, offset_days: 17, channel: sms, template: sms_reminder",
            "{id: sms_reminder, offset_days: 17, channel: sms, template: first_reminder",
            1,
        ),
    )
    .unwrap();
    let (code, _, stderr) = relancectl(&["policy", "check", &wrong_channel.to_string_lossy()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .contains("template first_reminder is a Email template in en, but the step sends sms"),
        "{stderr}"
    );
}

#[test]
fn policy_check_warns_of_steps_never_sent_and_of_stop_on_reply() {
    let (code, _, stderr) = relancectl(&["policy", "check", "config/policies/default.yaml"]);
    assert_eq!(code, 0);
    assert!(
        !stderr.contains("is never sent"),
        "the shipped policy reaches every step: {stderr}"
    );
    assert!(
        stderr.contains("stop_on_reply is set on") && stderr.contains("has no effect"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(relance_testkit::repo_root().join("config/policies/default.yaml"))
            .unwrap();
    let crowded = dir.path().join("crowded.yaml");
    std::fs::write(&crowded, text.replacen("count: 4", "count: 2", 1)).unwrap();
    let (code, _, stderr) = relancectl(&["policy", "check", &crowded.to_string_lossy()]);
    assert_eq!(code, 0, "a warning, not an error: {stderr}");
    assert!(
        stderr.contains("segment standard: step") && stderr.contains("is never sent"),
        "{stderr}"
    );
}

#[test]
fn policy_simulate_shows_the_templates_the_scheduler_sends_and_refuses_impossible_promises() {
    let (code, stdout, stderr) = relancectl(&[
        "policy",
        "simulate",
        "--due-on",
        "2026-12-02",
        "--amount",
        "25000.00",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("first_reminder_personal"), "{stdout}");
    assert!(stdout.contains("final_notice_personal"), "{stdout}");

    let (code, _, stderr) = relancectl(&[
        "policy",
        "simulate",
        "--due-on",
        "2026-12-02",
        "--from",
        "2026-12-10",
        "--promise",
        "2027-03-01",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--promise 2027-03-01") && stderr.contains("max_promise_days = 30"),
        "{stderr}"
    );
}
