//! The shipped templates: they pass the lint, render as recorded (golden files), fall back as
//! documented and escape what customers' data contains. Set `UPDATE_GOLDEN=1` to re-record
//! the golden files after a deliberate change, then review the diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use relance_templates::{lint, Channel, MessageContext, TemplateStore};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/templates")
}

fn load(root: &Path) -> TemplateStore {
    match TemplateStore::load(root) {
        Ok(store) => store,
        Err(error) => panic!("templates under {} do not load: {error}", root.display()),
    }
}

#[test]
fn shipped_templates_follow_every_writing_rule() {
    let store = load(&shipped());
    let findings = lint(&store);
    let report: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert!(report.is_empty(), "lint findings:\n{}", report.join("\n"));
}

#[test]
fn french_and_english_ship_the_same_templates() {
    let store = load(&shipped());
    let names = |locale: &str| -> Vec<String> {
        store
            .templates()
            .filter(|(set, found, _, _)| *set == "default" && *found == locale)
            .map(|(_, _, template, _)| template.to_string())
            .collect()
    };
    assert!(names("fr").len() >= 18, "{:?}", names("fr"));
    assert_eq!(names("fr"), names("en"));
}

fn golden_text(store: &TemplateStore, locale: &str, template: &str) -> String {
    let mut out = String::new();
    for (name, context) in [
        ("sample", MessageContext::sample(locale)),
        ("minimal", MessageContext::minimal(locale)),
    ] {
        let message = match store.render_exact("default", locale, template, &context) {
            Ok(message) => message,
            Err(error) => panic!("{locale}/{template}: {error}"),
        };
        let _ = writeln!(out, "===== {name}: subject =====\n{}", message.subject);
        let _ = writeln!(out, "===== {name}: text =====\n{}", message.text);
        if name == "sample" {
            if let Some(html) = &message.html {
                let _ = writeln!(out, "===== {name}: html =====\n{html}");
            }
        }
    }
    out
}

#[test]
fn shipped_templates_render_as_recorded() {
    let store = load(&shipped());
    let golden_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    let templates: Vec<(String, String)> = store
        .templates()
        .filter(|(set, _, _, _)| *set == "default")
        .map(|(_, locale, template, _)| (locale.to_string(), template.to_string()))
        .collect();
    for (locale, template) in templates {
        let rendered = golden_text(&store, &locale, &template);
        let path = golden_root.join(&locale).join(format!("{template}.golden"));
        if update {
            std::fs::create_dir_all(path.parent().unwrap_or(&golden_root))
                .unwrap_or_else(|error| panic!("{error}"));
            std::fs::write(&path, &rendered)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            continue;
        }
        let recorded = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "{}: {error} (run with UPDATE_GOLDEN=1 to record)",
                path.display()
            )
        });
        checked += 1;
        if recorded != rendered {
            mismatches.push(path.display().to_string());
        }
    }
    assert!(
        update || checked >= 36,
        "only {checked} golden files checked"
    );
    assert!(
        mismatches.is_empty(),
        "rendering changed (UPDATE_GOLDEN=1 to re-record after review): {mismatches:?}"
    );
}

fn copy_layouts(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|error| panic!("{error}"));
    for name in ["layout.html", "layout.txt"] {
        std::fs::copy(from.join(name), to.join(name))
            .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
}

#[test]
fn the_lint_rejects_a_template_that_breaks_the_rules() {
    let folder = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let english = folder.path().join("default/en");
    copy_layouts(&shipped().join("default/en"), &english);
    std::fs::write(
        english.join("shouty.toml"),
        r#"
channel = "email"
subject = "URGENT: 3rd reminder, unpaid invoice {{ invoice.number }} - pay now or face the consequences of ignoring us"
action = "Pay"
body = "Dear customer, pay now!"
"#,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    std::fs::write(
        english.join("unknown_variable.toml"),
        r#"
channel = "email"
subject = "Invoice {{ invoice.number }}"
action = "Pay"
body = "Hello {{ contact.nickname }}"
"#,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    std::fs::write(
        english.join("long_sms.toml"),
        format!(
            r#"channel = "sms"
text = "{{{{ contact.greeting_name }}}} {{{{ invoice.number }}}} {{{{ total_due }}}} {}""#,
            "padding ".repeat(50)
        ),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let store = load(folder.path());
    let findings = lint(&store);
    let rules = |template: &str| -> Vec<&str> {
        findings
            .iter()
            .filter(|finding| finding.template == format!("default/en/{template}"))
            .map(|finding| finding.rule)
            .collect()
    };
    let shouty = rules("shouty");
    for rule in [
        "calm_subject",
        "no_exclamation_marks",
        "greets_by_name",
        "short_subject",
    ] {
        assert!(shouty.contains(&rule), "{rule} not reported: {findings:#?}");
    }
    assert!(
        findings
            .iter()
            .any(|finding| finding.template == "default/en/shouty"
                && finding.message.contains("\"urgent\"")),
        "{findings:#?}"
    );
    assert!(
        rules("unknown_variable").contains(&"renders"),
        "{findings:#?}"
    );
    let long_sms = rules("long_sms");
    assert!(
        long_sms.contains(&"short_sms") && long_sms.contains(&"one_call_to_action"),
        "{findings:#?}"
    );
}

#[test]
fn templates_fall_back_from_tenant_to_default_and_from_locale_to_english() {
    let folder = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    for locale in ["fr", "en"] {
        let target = folder.path().join("default").join(locale);
        copy_layouts(&shipped().join("default").join(locale), &target);
        std::fs::copy(
            shipped()
                .join("default")
                .join(locale)
                .join("first_reminder.toml"),
            target.join("first_reminder.toml"),
        )
        .unwrap_or_else(|error| panic!("{error}"));
    }
    let tenant = folder.path().join("acme/en-GB");
    std::fs::create_dir_all(&tenant).unwrap_or_else(|error| panic!("{error}"));
    std::fs::write(
        tenant.join("first_reminder.toml"),
        "channel = \"email\"\nsubject = \"Acme invoice {{ invoice.number }}\"\naction = \"Pay\"\nbody = \"Hi.\"\n",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let store = load(folder.path());
    let render = |set: &str, locale: &str| -> (String, Channel) {
        let mut context = MessageContext::sample(locale);
        context.locale = locale.into();
        match store.render(set, "first_reminder", &context) {
            Ok(message) => (message.source, message.channel),
            Err(error) => panic!("{set} {locale}: {error}"),
        }
    };
    assert_eq!(render("acme", "en-GB").0, "acme/en-GB/first_reminder");
    assert_eq!(render("acme", "fr-FR").0, "default/fr/first_reminder");
    assert_eq!(render("acme", "en-US").0, "default/en/first_reminder");
    assert_eq!(render("other", "de-DE").0, "default/en/first_reminder");
    assert_eq!(
        render("default", "fr-BE"),
        ("default/fr/first_reminder".to_string(), Channel::Email)
    );
    let missing = store.render("acme", "no_such_template", &MessageContext::sample("fr"));
    assert!(missing.is_err());
}

#[test]
fn customer_data_is_escaped_in_html_and_kept_in_text() {
    let store = load(&shipped());
    let mut context = MessageContext::sample("en");
    context.contact.greeting_name = "<script>alert('x')</script> & Co".into();
    context.invoices[0].number = "<b>F-1</b>".into();
    let message = match store.render("default", "first_reminder", &context) {
        Ok(message) => message,
        Err(error) => panic!("{error}"),
    };
    let html = message.html.unwrap_or_default();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<b>F-1</b>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2F;script&gt; &amp; Co")
            || html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co"),
        "{html}"
    );
    assert!(html.contains("&lt;b&gt;F-1&lt;/b&gt;"), "{html}");
    assert!(
        message
            .text
            .contains("Hello <script>alert('x')</script> & Co,"),
        "{}",
        message.text
    );
    // Links are not mangled by escaping.
    assert!(
        html.contains(&format!("href=\"{}\"", context.links.pay)),
        "{html}"
    );
}

/// Issue 14, item 13: a customer who paid part of an invoice must not read that no payment
/// arrived; the message asks for the balance.
#[test]
fn a_partly_paid_invoice_is_never_called_unpaid() {
    let store = load(&shipped());
    let denials = [
        "not yet received payment",
        "not received payment",
        "could not find a payment",
        "pas encore reçu le règlement",
        "ne nous est pas parvenu",
        "pas trouvé trace du règlement de",
    ];
    for locale in ["en", "fr"] {
        let consolidated = MessageContext::sample(locale);
        let mut single = consolidated.clone();
        single.consolidated = false;
        single.invoices.truncate(1);
        single.total_due = single.invoice.amount_due.clone();
        assert!(single.invoice.partially_settled);
        let templates: Vec<String> = store
            .templates()
            .filter(|(set, found, _, _)| *set == "default" && *found == locale)
            .map(|(_, _, template, _)| template.to_string())
            .collect();
        for template in &templates {
            for (shape, context) in [("single", &single), ("consolidated", &consolidated)] {
                let message = store
                    .render_exact("default", locale, template, context)
                    .unwrap_or_else(|error| panic!("{locale}/{template}: {error}"));
                let text = message.text.to_lowercase();
                for denial in denials {
                    assert!(
                        !text.contains(denial),
                        "{locale}/{template} ({shape}) says {denial:?} over a partly paid invoice:\n{}",
                        message.text
                    );
                }
            }
        }
    }
}
