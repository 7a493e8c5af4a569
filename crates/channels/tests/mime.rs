//! The `.eml` writer against a standard parser: whatever the names, subject and bodies hold
//! (line breaks, bidi overrides, encoded-word look-alikes, emoji, very long text), the message
//! keeps every line within RFC 5322's limits and reads back to the same text.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

use std::collections::BTreeMap;

use chrono::TimeZone;
use mailparse::{addrparse_header, MailAddr, MailHeaderMap};
use proptest::prelude::*;
use relance_channels::{render_eml, Mailbox, OutgoingEmail};
use relance_delivery::text::one_line;
use uuid::Uuid;

fn email(from_name: &str, to_name: &str, subject: &str, text: &str, html: &str) -> OutgoingEmail {
    OutgoingEmail {
        send_id: Uuid::from_u128(42),
        from: Mailbox::new("billing@acme.example", Some(from_name.to_string())),
        reply_to: Some("ar@acme.example".into()),
        to: Mailbox::new("camille@example.fr", Some(to_name.to_string())),
        subject: subject.to_string(),
        html: html.to_string(),
        text: text.to_string(),
        tag: Some("dunning-default-first_reminder".into()),
        metadata: BTreeMap::new(),
        date: chrono::Utc
            .with_ymd_and_hms(2026, 12, 2, 9, 0, 0)
            .single()
            .unwrap(),
    }
}

/// The display name and address of a one-mailbox header.
fn mailbox(header: &mailparse::MailHeader<'_>) -> (Option<String>, String) {
    match addrparse_header(header).unwrap().first().cloned() {
        Some(MailAddr::Single(single)) => (single.display_name, single.addr),
        other => panic!("not one mailbox: {other:?}"),
    }
}

fn check(message: &OutgoingEmail) {
    let eml = render_eml(message);
    let (head, _) = eml.split_once("\r\n\r\n").unwrap();
    for line in eml.split("\r\n") {
        assert!(line.len() <= 998, "a line of {} octets", line.len());
    }
    for line in head.split("\r\n") {
        assert!(
            line.len() <= 78,
            "a header line of {} octets: {line}",
            line.len()
        );
        assert!(line.is_ascii(), "a header is ASCII: {line}");
        for word in line.split(' ').filter(|word| word.starts_with("=?")) {
            assert!(
                word.len() <= 75,
                "an encoded word of {}: {word}",
                word.len()
            );
        }
    }
    let parsed = mailparse::parse_mail(eml.as_bytes()).unwrap();
    let headers = parsed.get_headers();
    assert_eq!(
        headers.get_first_value("Subject").unwrap_or_default(),
        one_line(&message.subject),
        "{head}"
    );
    let expect_name = |name: &Option<String>| {
        name.as_deref()
            .map(one_line)
            .filter(|name| !name.is_empty())
    };
    let to = headers.get_first_header("To").unwrap();
    assert_eq!(
        mailbox(to),
        (expect_name(&message.to.name), message.to.address.clone()),
        "{head}"
    );
    let from = headers.get_first_header("From").unwrap();
    assert_eq!(
        mailbox(from),
        (
            expect_name(&message.from.name),
            message.from.address.clone()
        ),
        "{head}"
    );
    assert_eq!(parsed.subparts.len(), 2);
    assert_eq!(
        parsed.subparts[0].get_body_raw().unwrap(),
        message.text.as_bytes()
    );
    assert_eq!(
        parsed.subparts[1].get_body_raw().unwrap(),
        message.html.as_bytes()
    );
}

#[test]
fn the_observed_attacks_read_back_harmless() {
    let long_name = "Émilie-Marguerite 🦄🦄🦄 de la Tour d'Auvergne-Lauraguais ".repeat(30);
    check(&email(
        "Acme \"Billing\"",
        &long_name,
        "Facture F-=?UTF-8?Q?a=0D=0ABcc:_evil@example.com?=-1 : échéance",
        "Bonjour",
        "<p>Bonjour</p>",
    ));
    let eml = render_eml(&email(
        "Acme",
        "Zoë \u{202E}fdp.exe",
        "Relance \u{202E}gnp.exe\r\nBcc: evil@example.com",
        "x",
        "y",
    ));
    assert!(!eml.contains('\u{202E}'));
    let head = eml.split("\r\n\r\n").next().unwrap();
    assert!(!head.lines().any(|line| line.starts_with("Bcc:")), "{head}");
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[a-zA-Z ]{0,300}",
        "(=\\?UTF-8\\?[QB]\\?[a-zA-Z0-9=_]{0,20}\\?=|[ \u{202E}\u{2067}\r\n\t\"\\\\]|é|🦄|[a-z]{1,90}){0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_message_reads_back_to_the_same_text(
        from_name in any_text(),
        to_name in any_text(),
        subject in any_text(),
        text in ".{0,200}",
        html in ".{0,200}",
    ) {
        check(&email(&from_name, &to_name, &subject, &text, &html));
    }
}
