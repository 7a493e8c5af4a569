//! Each provider against a mock of its documented HTTP API: the exact request shape (headers,
//! JSON field names, batch limit) and the handling of each documented error answer (see
//! `shared/notes/email-providers.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use relance_channels::{
    EmailProvider, FileProvider, Lookup, Mailbox, Outcome, OutgoingEmail, OutgoingSms,
    PostmarkConfig, PostmarkProvider, SendGridConfig, SendGridProvider, SmsProvider, TwilioConfig,
    TwilioProvider, POSTMARK_BATCH_LIMIT,
};
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn email(number: u128) -> OutgoingEmail {
    let mut metadata = BTreeMap::new();
    metadata.insert("invoice".to_string(), "inv_42".to_string());
    metadata.insert("step".to_string(), "first_reminder".to_string());
    OutgoingEmail {
        send_id: Uuid::from_u128(number),
        from: Mailbox::new("billing@vendor.example", Some("Vendor Billing".into())),
        reply_to: Some("ar@vendor.example".into()),
        to: Mailbox::new(
            format!("customer{number}@example.com"),
            Some("Camille Durand".into()),
        ),
        subject: "Invoice INV-42: payment not yet received".into(),
        html: "<p>Hello</p>".into(),
        text: "Hello".into(),
        tag: Some("dunning-default-first_reminder".into()),
        metadata,
        date: chrono::Utc::now(),
    }
}

fn postmark(server: &MockServer, timeout: Duration) -> PostmarkProvider {
    PostmarkProvider::new(PostmarkConfig {
        base_url: server.uri(),
        server_token: "test-server-token".to_string().into(),
        message_stream: "outbound".into(),
        timeout,
        track_opens: true,
    })
    .unwrap_or_else(|error| panic!("{error}"))
}

fn postmark_ok(message_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "To": "customer1@example.com",
        "SubmittedAt": "2024-03-01T09:15:02.1234567-05:00",
        "MessageID": message_id,
        "ErrorCode": 0,
        "Message": "OK"
    }))
}

#[tokio::test]
async fn postmark_single_send_has_the_documented_shape() {
    let server = MockServer::start().await;
    let message = email(1);
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("X-Postmark-Server-Token", "test-server-token"))
        .and(header("Accept", "application/json"))
        .and(header("Content-Type", "application/json"))
        .and(body_partial_json(json!({
            "From": "\"Vendor Billing\" <billing@vendor.example>",
            "To": "\"Camille Durand\" <customer1@example.com>",
            "Subject": "Invoice INV-42: payment not yet received",
            "HtmlBody": "<p>Hello</p>",
            "TextBody": "Hello",
            "ReplyTo": "ar@vendor.example",
            "Tag": "dunning-default-first_reminder",
            "MessageStream": "outbound",
            "TrackOpens": true,
            "TrackLinks": "None",
            "Metadata": {"relance_send": message.send_id.to_string(), "invoice": "inv_42", "step": "first_reminder"}
        })))
        .respond_with(postmark_ok("0f5c1a8e-3d7b-4c4e-9a51-6f0e2b9d1c11"))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = postmark(&server, Duration::from_secs(5))
        .send(&message)
        .await;
    assert_eq!(
        outcome,
        Outcome::Accepted {
            message_id: Some("0f5c1a8e-3d7b-4c4e-9a51-6f0e2b9d1c11".into())
        }
    );
}

#[tokio::test]
async fn postmark_metadata_stays_within_its_limits() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(postmark_ok("m"))
        .mount(&server)
        .await;
    let mut message = email(2);
    for index in 0..15 {
        message.metadata.insert(
            format!("a{index:02}_rather_long_metadata_key"),
            "v".repeat(200),
        );
    }
    postmark(&server, Duration::from_secs(5))
        .send(&message)
        .await;
    let requests = server.received_requests().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap_or_default();
    let metadata = body["Metadata"].as_object().cloned().unwrap_or_default();
    assert_eq!(metadata.len(), 10, "{metadata:?}");
    assert_eq!(metadata["relance_send"], json!(message.send_id.to_string()));
    assert!(
        metadata.keys().all(|key| key.chars().count() <= 20),
        "{metadata:?}"
    );
    assert!(metadata.values().all(|value| value
        .as_str()
        .is_some_and(|text| text.chars().count() <= 80)));
}

async fn postmark_answer(status: u16, body: Value) -> Outcome {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    postmark(&server, Duration::from_secs(5))
        .send(&email(3))
        .await
}

#[tokio::test]
async fn postmark_errors_are_classified_by_error_code() {
    let inactive = "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: customer3@example.com. Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression.";
    assert_eq!(
        postmark_answer(422, json!({"ErrorCode": 406, "Message": inactive})).await,
        Outcome::Rejected {
            code: "406".into(),
            message: inactive.into(),
            recipient_inactive: true
        }
    );
    // Some answers carry a refusal with a 200.
    assert_eq!(
        postmark_answer(200, json!({"ErrorCode": 406, "Message": inactive}))
            .await
            .class(),
        "permanent"
    );
    let invalid = postmark_answer(
        422,
        json!({"ErrorCode": 300, "Message": "Invalid 'From' address"}),
    )
    .await;
    assert!(
        matches!(&invalid, Outcome::Rejected { code, recipient_inactive: false, .. } if code == "300"),
        "{invalid:?}"
    );
    assert_eq!(
        postmark_answer(
            401,
            json!({"ErrorCode": 10, "Message": "No Account or Server API tokens were supplied"})
        )
        .await
        .class(),
        "config"
    );
    assert_eq!(
        postmark_answer(422, json!({"ErrorCode": 10, "Message": "Bad token"}))
            .await
            .class(),
        "config"
    );
    assert_eq!(
        postmark_answer(
            422,
            json!({"ErrorCode": 400, "Message": "Sender signature not found"})
        )
        .await
        .class(),
        "config"
    );
    assert_eq!(
        postmark_answer(
            422,
            json!({"ErrorCode": 405, "Message": "Not allowed to send"})
        )
        .await
        .class(),
        "config"
    );
    assert_eq!(
        postmark_answer(422, json!({"ErrorCode": 409, "Message": "JSON required"}))
            .await
            .class(),
        "permanent"
    );
    assert_eq!(
        postmark_answer(
            429,
            json!({"ErrorCode": 429, "Message": "Rate limit exceeded"})
        )
        .await
        .class(),
        "transient"
    );
    assert_eq!(
        postmark_answer(500, json!({"ErrorCode": 0, "Message": "Internal error"}))
            .await
            .class(),
        "transient"
    );
    assert_eq!(
        postmark_answer(503, json!({"ErrorCode": 100, "Message": "Maintenance"}))
            .await
            .class(),
        "transient"
    );
    assert_eq!(
        postmark_answer(413, json!({"ErrorCode": 0, "Message": "Payload too large"}))
            .await
            .class(),
        "permanent"
    );
}

#[tokio::test]
async fn postmark_timeouts_are_ambiguous_and_refused_connections_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(postmark_ok("late").set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let outcome = postmark(&server, Duration::from_millis(300))
        .send(&email(4))
        .await;
    assert_eq!(outcome.class(), "ambiguous", "{outcome:?}");

    let closed =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|error| panic!("{error}"));
    let address = closed
        .local_addr()
        .unwrap_or_else(|error| panic!("{error}"));
    drop(closed);
    let provider = PostmarkProvider::new(PostmarkConfig {
        base_url: format!("http://{address}"),
        server_token: "t".to_string().into(),
        message_stream: "outbound".into(),
        timeout: Duration::from_secs(2),
        track_opens: false,
    })
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(provider.send(&email(5)).await.class(), "transient");
}

#[tokio::test]
async fn postmark_batches_go_to_the_batch_endpoint_at_most_500_at_a_time() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email/batch"))
        .and(header("X-Postmark-Server-Token", "test-server-token"))
        .and(header("Accept", "application/json"))
        .and(header("Content-Type", "application/json"))
        .respond_with(|request: &Request| {
            let messages: Vec<Value> = serde_json::from_slice(&request.body).unwrap_or_default();
            let answers: Vec<Value> = messages
                .iter()
                .map(|message| {
                    if message["To"].as_str().is_some_and(|to| to.contains("customer7@")) {
                        json!({"ErrorCode": 406, "Message": "Found inactive addresses: customer7@example.com. Inactive recipients are…"})
                    } else {
                        json!({"ErrorCode": 0, "Message": "OK", "MessageID": format!("pm-{}", message["Metadata"]["relance_send"].as_str().unwrap_or_default()), "To": message["To"], "SubmittedAt": "2024-03-01T09:15:02.1234567-05:00"})
                    }
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(answers)
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .respond_with(postmark_ok("single"))
        .mount(&server)
        .await;
    let provider = postmark(&server, Duration::from_secs(10));
    assert_eq!(provider.max_batch(), POSTMARK_BATCH_LIMIT);

    let emails: Vec<OutgoingEmail> = (1..=501).map(email).collect();
    let outcomes = provider.send_batch(&emails).await;
    assert_eq!(outcomes.len(), 501);
    assert_eq!(
        outcomes[0],
        Outcome::Accepted {
            message_id: Some(format!("pm-{}", emails[0].send_id))
        }
    );
    assert!(
        matches!(
            &outcomes[6],
            Outcome::Rejected {
                recipient_inactive: true,
                ..
            }
        ),
        "{:?}",
        outcomes[6]
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| outcome.class() == "accepted")
            .count(),
        500
    );

    let requests = server.received_requests().await.unwrap_or_default();
    let batch_sizes: Vec<usize> = requests
        .iter()
        .filter(|request| request.url.path() == "/email/batch")
        .map(|request| {
            serde_json::from_slice::<Vec<Value>>(&request.body)
                .map(|batch| batch.len())
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(batch_sizes, vec![500]);
    assert_eq!(
        requests
            .iter()
            .filter(|request| request.url.path() == "/email")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_postmark_batch_refused_as_a_whole_fails_every_message_alike() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/email/batch"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"ErrorCode": 10, "Message": "Bad or missing API token"})),
        )
        .mount(&server)
        .await;
    let outcomes = postmark(&server, Duration::from_secs(5))
        .send_batch(&[email(1), email(2)])
        .await;
    assert_eq!(
        outcomes.iter().map(Outcome::class).collect::<Vec<_>>(),
        ["config", "config"]
    );
}

#[tokio::test]
async fn postmark_is_searched_by_our_send_id_to_reconcile() {
    let server = MockServer::start().await;
    let sent = Uuid::from_u128(10);
    Mock::given(method("GET"))
        .and(path("/messages/outbound"))
        .and(header("X-Postmark-Server-Token", "test-server-token"))
        .and(header("Accept", "application/json"))
        .and(query_param("metadata_relance_send", sent.to_string()))
        .and(query_param("count", "1"))
        .and(query_param("offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"TotalCount": 1, "Messages": [{"MessageID": "pm-10", "Metadata": {"relance_send": sent.to_string()}}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/messages/outbound"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"TotalCount": 0, "Messages": []})),
        )
        .mount(&server)
        .await;
    let provider = postmark(&server, Duration::from_secs(5));
    assert_eq!(
        provider.lookup(sent).await,
        Lookup::Found {
            message_id: Some("pm-10".into())
        }
    );
    assert_eq!(provider.lookup(Uuid::from_u128(11)).await, Lookup::NotFound);
}

fn sendgrid(server: &MockServer) -> SendGridProvider {
    SendGridProvider::new(SendGridConfig {
        base_url: server.uri(),
        api_key: "SG.test-key".to_string().into(),
        timeout: Duration::from_secs(5),
        sandbox: false,
    })
    .unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test]
async fn sendgrid_mail_send_has_the_documented_shape() {
    let server = MockServer::start().await;
    let mut message = email(20);
    message.to.name = Some("Durand, Camille; Ltd".into());
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("Authorization", "Bearer SG.test-key"))
        .and(header("Accept", "application/json"))
        .and(header("Content-Type", "application/json"))
        .and(body_partial_json(json!({
            "personalizations": [{
                "to": [{"email": "customer20@example.com", "name": "Durand Camille Ltd"}],
                "custom_args": {"relance_send": message.send_id.to_string(), "invoice": "inv_42", "step": "first_reminder"}
            }],
            "from": {"email": "billing@vendor.example", "name": "Vendor Billing"},
            "reply_to": {"email": "ar@vendor.example"},
            "subject": "Invoice INV-42: payment not yet received",
            "content": [{"type": "text/plain", "value": "Hello"}, {"type": "text/html", "value": "<p>Hello</p>"}],
            "categories": ["dunning", "dunning-default-first_reminder"],
            "tracking_settings": {"click_tracking": {"enable": false, "enable_text": false}},
            "mail_settings": {"sandbox_mode": {"enable": false}}
        })))
        .respond_with(ResponseTemplate::new(202).insert_header("X-Message-Id", "R14554qsAGSkiKYYviJN34"))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        sendgrid(&server).send(&message).await,
        Outcome::Accepted {
            message_id: Some("R14554qsAGSkiKYYviJN34".into())
        }
    );
}

async fn sendgrid_answer(response: ResponseTemplate) -> Outcome {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(response)
        .mount(&server)
        .await;
    sendgrid(&server).send(&email(21)).await
}

#[tokio::test]
async fn sendgrid_errors_are_classified_by_status() {
    let validation = sendgrid_answer(ResponseTemplate::new(400).set_body_json(json!({"errors": [
        {"message": "The from email does not contain a valid address.", "field": "from.email", "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.from"}
    ]})))
    .await;
    assert_eq!(
        validation,
        Outcome::Rejected {
            code: "http_400".into(),
            message: "from.email: The from email does not contain a valid address.".into(),
            recipient_inactive: false
        }
    );
    assert_eq!(
        sendgrid_answer(ResponseTemplate::new(401).set_body_json(
            json!({"errors": [{"message": "authorization required", "field": null}]})
        ))
        .await
        .class(),
        "config"
    );
    assert_eq!(sendgrid_answer(ResponseTemplate::new(403).set_body_json(json!({"errors": [{"message": "The from address does not match a verified Sender Identity.", "field": "from"}]}))).await.class(), "config");
    assert_eq!(
        sendgrid_answer(
            ResponseTemplate::new(413)
                .set_body_json(json!({"errors": [{"message": "too large", "field": null}]}))
        )
        .await
        .class(),
        "permanent"
    );
    let reset = chrono::Utc::now().timestamp() + 42;
    let limited = sendgrid_answer(
        ResponseTemplate::new(429)
            .insert_header("X-RateLimit-Limit", "600")
            .insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-Reset", reset.to_string().as_str())
            .set_body_json(json!({"errors": [{"field": null, "message": "too many requests"}]})),
    )
    .await;
    match limited {
        Outcome::Transient {
            retry_after: Some(wait),
            ..
        } => assert!((40..=42).contains(&wait.as_secs()), "{wait:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sendgrid_answer(ResponseTemplate::new(500)).await.class(),
        "transient"
    );
    assert_eq!(
        sendgrid_answer(ResponseTemplate::new(503)).await.class(),
        "transient"
    );
    // Sandbox answers (200) mean nothing was sent.
    assert_eq!(
        sendgrid_answer(ResponseTemplate::new(200)).await.class(),
        "config"
    );
}

fn twilio(server: &MockServer) -> TwilioProvider {
    TwilioProvider::new(TwilioConfig {
        base_url: server.uri(),
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        auth_token: "auth-token".to_string().into(),
        from: Some("+33700000000".into()),
        messaging_service_sid: None,
        status_callback: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap_or_else(|error| panic!("{error}"))
}

fn sms() -> OutgoingSms {
    OutgoingSms {
        send_id: Uuid::from_u128(30),
        to: "+33612345678".into(),
        body: "Bonjour Camille, facture F-1 (120,00 €) : https://r.example/l/pay/t".into(),
        date: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn twilio_messages_have_the_documented_shape() {
    use base64::Engine as _;
    let server = MockServer::start().await;
    let credentials = base64::engine::general_purpose::STANDARD
        .encode("AC0123456789abcdef0123456789abcdef:auth-token");
    Mock::given(method("POST"))
        .and(path(
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
        ))
        .and(header(
            "Authorization",
            format!("Basic {credentials}").as_str(),
        ))
        .and(header("Content-Type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued", "to": "+33612345678",
            "from": "+33700000000", "body": "…", "error_code": null, "error_message": null
        })))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = twilio(&server).send(&sms()).await;
    assert_eq!(
        outcome,
        Outcome::Accepted {
            message_id: Some("SM0123456789abcdef0123456789abcdef".into())
        }
    );
    let requests = server.received_requests().await.unwrap_or_default();
    let form: BTreeMap<String, String> = url_form(&requests[0].body);
    assert_eq!(form.get("To").map(String::as_str), Some("+33612345678"));
    assert_eq!(form.get("From").map(String::as_str), Some("+33700000000"));
    assert_eq!(
        form.get("Body").map(String::as_str),
        Some(sms().body.as_str())
    );
}

fn url_form(body: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (decode(key), decode(value)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn twilio_answer(status: u16, code: i64, message: &str) -> Outcome {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({
            "code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status
        })))
        .mount(&server)
        .await;
    twilio(&server).send(&sms()).await
}

#[tokio::test]
async fn twilio_errors_are_classified_by_code() {
    assert_eq!(
        twilio_answer(400, 21610, "Attempt to send to unsubscribed recipient").await,
        Outcome::Rejected {
            code: "21610".into(),
            message: "Attempt to send to unsubscribed recipient".into(),
            recipient_inactive: true
        }
    );
    assert!(matches!(
        twilio_answer(400, 21211, "The 'To' number is not a valid phone number.").await,
        Outcome::Rejected {
            recipient_inactive: true,
            ..
        }
    ));
    assert!(matches!(
        twilio_answer(400, 21602, "Message body is required.").await,
        Outcome::Rejected {
            recipient_inactive: false,
            ..
        }
    ));
    assert_eq!(
        twilio_answer(401, 20003, "Authenticate").await.class(),
        "config"
    );
    assert_eq!(
        twilio_answer(429, 20429, "Too Many Requests").await.class(),
        "transient"
    );
    assert_eq!(
        twilio_answer(503, 20500, "Internal Server Error")
            .await
            .class(),
        "transient"
    );
}

#[tokio::test]
async fn the_file_provider_writes_each_message_once() {
    let folder = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let provider = FileProvider::new(folder.path()).unwrap_or_else(|error| panic!("{error}"));
    let message = email(40);
    assert_eq!(
        EmailProvider::lookup(&provider, message.send_id).await,
        Lookup::NotFound
    );
    let first = EmailProvider::send(&provider, &message).await;
    assert_eq!(
        first,
        Outcome::Accepted {
            message_id: Some(format!("file:{}", message.send_id))
        }
    );
    let eml_path = folder.path().join(format!("{}.eml", message.send_id));
    let eml = std::fs::read_to_string(&eml_path).unwrap_or_else(|error| panic!("{error}"));
    assert!(
        eml.contains("Subject: Invoice INV-42: payment not yet received\r\n"),
        "{eml}"
    );
    assert!(
        eml.contains("Content-Type: multipart/alternative;"),
        "{eml}"
    );
    assert!(folder
        .path()
        .join(format!("{}.html", message.send_id))
        .exists());

    let mut changed = message.clone();
    changed.subject = "Something else".into();
    assert_eq!(
        EmailProvider::send(&provider, &changed).await.class(),
        "accepted"
    );
    assert_eq!(
        std::fs::read_to_string(&eml_path).unwrap_or_default(),
        eml,
        "a send id is written once"
    );
    assert_eq!(
        EmailProvider::lookup(&provider, message.send_id).await,
        Lookup::Found {
            message_id: Some(format!("file:{}", message.send_id))
        }
    );

    let text = sms();
    assert_eq!(
        SmsProvider::send(&provider, &text).await.class(),
        "accepted"
    );
    let written = std::fs::read_to_string(folder.path().join(format!("{}.sms.txt", text.send_id)))
        .unwrap_or_default();
    assert!(
        written.contains("To: +33612345678") && written.contains(&text.body),
        "{written}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(folder.path())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "partial"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty());
}
