//! The providers' documented sample payloads (values ours), and SendGrid signatures: the
//! published test vector and signatures made with a test key pair.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;

use super::*;

const SEND_ID: &str = "7e0c6f9a-1b2c-4d3e-8f40-5a6b7c8d9e01";

#[test]
fn postmark_delivery_bounce_complaint_open_and_click_are_read() {
    let delivery = format!(
        r#"{{"RecordType":"Delivery","MessageStream":"outbound","ServerID":23,"MessageID":"0f5c1a8e-3d7b-4c4e-9a51-6f0e2b9d1c11","Recipient":"customer@example.com","Tag":"dunning-default-2","DeliveredAt":"2024-03-01T14:15:05.5432100Z","Details":"smtp;250 2.0.0 OK","Metadata":{{"relance_send":"{SEND_ID}","invoice":"INV-42"}}}}"#
    );
    let event = parse_postmark(delivery.as_bytes(), None).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(event.kind, EventKind::Delivered);
    assert_eq!(event.send_id, Uuid::parse_str(SEND_ID).ok());
    assert_eq!(
        event.provider_message_id.as_deref(),
        Some("0f5c1a8e-3d7b-4c4e-9a51-6f0e2b9d1c11")
    );
    assert_eq!(
        event.occurred_at.map(|at| at.to_rfc3339()),
        Some("2024-03-01T14:15:05.543210+00:00".into())
    );
    // The trace id, when Postmark sends it, is the key (stable across retries).
    assert_eq!(
        parse_postmark(delivery.as_bytes(), Some("abc")).map(|event| event.key),
        Ok("trace:abc".into())
    );

    let bounce = format!(
        r#"{{"RecordType":"Bounce","MessageStream":"outbound","ID":3719297970,"Type":"HardBounce","TypeCode":1,"Name":"Hard bounce","Tag":"dunning-default-2","MessageID":"0f5c1a8e-3d7b-4c4e-9a51-6f0e2b9d1c11","Metadata":{{"relance_send":"{SEND_ID}"}},"ServerID":23,"Description":"The server was unable to deliver your message","Details":"smtp;550 5.1.1 user unknown","Email":"customer@example.com","From":"billing@vendor.example","BouncedAt":"2024-03-01T14:15:07.0000000Z","DumpAvailable":true,"Inactive":true,"CanActivate":true,"Subject":"Invoice INV-42"}}"#
    );
    let event = parse_postmark(bounce.as_bytes(), None).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(event.kind, EventKind::Bounced { hard: true });
    assert_eq!(event.key, "Bounce:3719297970");
    assert_eq!(event.recipient.as_deref(), Some("customer@example.com"));
    let soft = bounce
        .replace("\"HardBounce\"", "\"SoftBounce\"")
        .replace("\"Inactive\":true", "\"Inactive\":false");
    assert_eq!(
        parse_postmark(soft.as_bytes(), None).map(|event| event.kind),
        Ok(EventKind::Bounced { hard: false })
    );
    let complaint = bounce
        .replace(
            "\"RecordType\":\"Bounce\"",
            "\"RecordType\":\"SpamComplaint\"",
        )
        .replace("\"HardBounce\"", "\"SpamComplaint\"");
    assert_eq!(
        parse_postmark(complaint.as_bytes(), None).map(|event| event.kind),
        Ok(EventKind::Complained)
    );

    let open = format!(
        r#"{{"RecordType":"Open","MessageStream":"outbound","FirstOpen":true,"Client":{{"Name":"Chrome 120"}},"OS":{{"Name":"macOS"}},"Platform":"WebMail","UserAgent":"Mozilla/5.0 (Macintosh) Chrome/120","ReadSeconds":5,"Geo":{{}},"MessageID":"0f5c1a8e-3d7b-4c4e-9a51-6f0e2b9d1c11","Metadata":{{"relance_send":"{SEND_ID}"}},"ReceivedAt":"2024-03-01T14:20:00.0000000Z","Tag":"dunning-default-2","Recipient":"customer@example.com"}}"#
    );
    let event = parse_postmark(open.as_bytes(), None).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(event.kind, EventKind::Opened);
    assert_eq!(
        event.user_agent.as_deref(),
        Some("Mozilla/5.0 (Macintosh) Chrome/120")
    );
    let click = open
        .replace("\"RecordType\":\"Open\"", "\"RecordType\":\"Click\",\"ClickLocation\":\"HTML\",\"OriginalLink\":\"https://pay.example/i/1\"");
    let event = parse_postmark(click.as_bytes(), None).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        event.kind,
        EventKind::Clicked {
            url: Some("https://pay.example/i/1".into())
        }
    );

    let unknown = r#"{"RecordType":"Inbound","MessageID":"x"}"#;
    assert_eq!(
        parse_postmark(unknown.as_bytes(), None).map(|event| event.kind),
        Ok(EventKind::Other("Inbound".into()))
    );
    assert!(parse_postmark(b"[]", None).is_err());
    assert!(parse_postmark(b"not json", None).is_err());
}

fn sendgrid_batch() -> String {
    format!(
        r#"[
  {{"email":"customer@example.com","timestamp":1709283605,"smtp-id":"<R1455@ismtpd-1>","event":"delivered","category":["dunning","step-2"],"sg_event_id":"ZGVsaXZlcmVkLTAt","sg_message_id":"R14554qsAGSkiKYYviJN34DGA.filter0001.16648.5515E0B88.0","response":"250 OK","tls":1,"relance_send":"{SEND_ID}","invoice":"INV-42"}},
  {{"email":"customer@example.com","timestamp":1709284000,"event":"open","sg_machine_open":true,"useragent":"Mozilla/5.0","ip":"17.58.0.1","sg_event_id":"b3Blbi0","sg_message_id":"R14554qsAGSkiKYYviJN34DGA.filter0001.16648.5515E0B88.0","relance_send":"{SEND_ID}"}},
  {{"email":"customer@example.com","timestamp":1709284100,"event":"click","url":"https://pay.vendor.example/a/1","url_offset":{{"index":0,"type":"html"}},"useragent":"Mozilla/5.0","ip":"203.0.113.9","sg_event_id":"Y2xpY2st","sg_message_id":"R14554qsAGSkiKYYviJN34DGA.filter0001.16648.5515E0B88.0","relance_send":"{SEND_ID}"}},
  {{"email":"bad@example.com","timestamp":1709283610,"event":"bounce","type":"bounce","reason":"550 5.1.1 unknown recipient","status":"5.1.1","sg_event_id":"Ym91bmNl","sg_message_id":"x","relance_send":"{SEND_ID}"}},
  {{"email":"customer@example.com","timestamp":1709290000,"event":"spamreport","sg_event_id":"c3BhbS0","sg_message_id":"x","relance_send":"{SEND_ID}"}},
  {{"email":"customer@example.com","timestamp":1709290001,"event":"deferred","attempt":"5","sg_event_id":"ZGVmZXJy"}},
  {{"email":"customer@example.com","event":"open"}}
]"#
    )
}

#[test]
fn sendgrid_batches_are_read_element_by_element() {
    let events =
        parse_sendgrid(sendgrid_batch().as_bytes()).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(events.len(), 7);
    let kinds: Vec<String> = events
        .iter()
        .map(|event| {
            event
                .as_ref()
                .map(|event| event.kind.label().to_string())
                .unwrap_or_else(|error| error.to_string())
        })
        .collect();
    assert_eq!(
        &kinds[..6],
        &[
            "delivered",
            "open",
            "click",
            "hard_bounce",
            "complaint",
            "other"
        ]
    );
    assert!(
        events[6].is_err(),
        "an element without sg_event_id is refused alone"
    );
    let open = events[1].as_ref().unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        (open.machine_flag, open.key.as_str()),
        (Some(true), "b3Blbi0")
    );
    assert_eq!(open.send_id, Uuid::parse_str(SEND_ID).ok());
    assert_eq!(
        open.occurred_at.map(|at| at.timestamp()),
        Some(1_709_284_000)
    );
    assert!(parse_sendgrid(b"{}").is_err(), "the body is an array");
}

#[test]
fn sendgrids_published_test_vector_verifies_and_any_change_does_not() {
    let key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    let verifier = SendGridVerifier::from_base64_der(key).unwrap_or_else(|error| panic!("{error}"));
    let payload =
        br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;
    let signature = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    assert_eq!(verifier.verify(signature, "1588788367", payload), Ok(()));
    assert_eq!(
        verifier.verify(signature, "1588788368", payload),
        Err(WebhookError::BadSignature)
    );
    let mut changed = payload.to_vec();
    changed[10] ^= 1;
    assert_eq!(
        verifier.verify(signature, "1588788367", &changed),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verifier.verify("not base64", "1588788367", payload),
        Err(WebhookError::BadSignature)
    );
    assert!(SendGridVerifier::from_base64_der("AAAA").is_err());
}

#[test]
fn signatures_made_with_a_test_key_pair_verify_only_unchanged() {
    let signing =
        SigningKey::from_bytes(&[7u8; 32].into()).unwrap_or_else(|error| panic!("{error}"));
    let public = signing
        .verifying_key()
        .to_public_key_der()
        .unwrap_or_else(|error| panic!("{error}"));
    let verifier = SendGridVerifier::from_base64_der(&STANDARD.encode(public.as_bytes()))
        .unwrap_or_else(|error| panic!("{error}"));
    let body = sendgrid_batch();
    let timestamp = "1709290002";
    let signed: Signature = signing.sign(&[timestamp.as_bytes(), body.as_bytes()].concat());
    let signature = STANDARD.encode(signed.to_der().as_bytes());
    assert_eq!(
        verifier.verify(&signature, timestamp, body.as_bytes()),
        Ok(())
    );
    for index in [0, body.len() / 2, body.len() - 1] {
        let mut changed = body.clone().into_bytes();
        changed[index] ^= 0x20;
        assert_eq!(
            verifier.verify(&signature, timestamp, &changed),
            Err(WebhookError::BadSignature),
            "byte {index}"
        );
    }
    let other = SigningKey::from_bytes(&[9u8; 32].into()).unwrap_or_else(|error| panic!("{error}"));
    let forged: Signature = other.sign(&[timestamp.as_bytes(), body.as_bytes()].concat());
    assert_eq!(
        verifier.verify(
            &STANDARD.encode(forged.to_der().as_bytes()),
            timestamp,
            body.as_bytes()
        ),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn basic_auth_and_secrets_compare_exactly() {
    let header = format!("Basic {}", STANDARD.encode("relance:s3cret-password"));
    assert!(basic_auth_matches(
        Some(&header),
        "relance",
        "s3cret-password"
    ));
    assert!(!basic_auth_matches(
        Some(&header),
        "relance",
        "s3cret-passwore"
    ));
    assert!(!basic_auth_matches(
        Some("Bearer x"),
        "relance",
        "s3cret-password"
    ));
    assert!(!basic_auth_matches(None, "relance", "s3cret-password"));
    assert!(secret_matches(Some("token-123"), "token-123"));
    assert!(!secret_matches(Some("token-124"), "token-123"));
    assert!(!secret_matches(None, "token-123"));
}

#[test]
fn a_signed_request_is_refused_once_its_timestamp_is_out_of_tolerance() {
    let signing =
        SigningKey::from_bytes(&[7u8; 32].into()).unwrap_or_else(|error| panic!("{error}"));
    let public = signing
        .verifying_key()
        .to_public_key_der()
        .unwrap_or_else(|error| panic!("{error}"));
    let verifier = SendGridVerifier::from_base64_der(&STANDARD.encode(public.as_bytes()))
        .unwrap_or_else(|error| panic!("{error}"));
    let body = sendgrid_batch();
    let sign = |timestamp: &str| {
        let signed: Signature = signing.sign(&[timestamp.as_bytes(), body.as_bytes()].concat());
        STANDARD.encode(signed.to_der().as_bytes())
    };
    let now = Utc.timestamp_opt(1_709_290_002, 0).unwrap();
    let at = |seconds: i64| (now.timestamp() + seconds).to_string();
    for (offset, expected) in [
        (0, Ok(())),
        (-300, Ok(())),
        (300, Ok(())),
        (-301, Err(WebhookError::Stale(301))),
        (-3 * 86_400, Err(WebhookError::Stale(3 * 86_400))),
        (3_600, Err(WebhookError::Stale(3_600))),
    ] {
        let timestamp = at(offset);
        assert_eq!(
            verifier.verify_fresh(&sign(&timestamp), &timestamp, body.as_bytes(), now, 300),
            expected,
            "{offset} s"
        );
    }
    for timestamp in [
        "",
        "soon",
        "1709290002.5",
        "-1709290002",
        " 1709290002",
        "0x65e1d0d2",
    ] {
        assert_eq!(
            verifier.verify_fresh(&sign(timestamp), timestamp, body.as_bytes(), now, 300),
            Err(WebhookError::BadTimestamp),
            "{timestamp:?}"
        );
    }
}
