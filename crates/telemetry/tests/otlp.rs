//! Spans reach an OTLP/HTTP collector with the ids they carry, and the last ones are sent at
//! shutdown. The collector here is a local HTTP server recording what it is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a failed test.

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::Router;
use relance_config::{LogFormat, TelemetrySettings};

/// Each request the collector received: its content type and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_with_their_ids() {
    let received: Received = Arc::default();
    let recorder = received.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let recorder = recorder.clone();
                async move {
                    let content_type = headers
                        .get("content-type")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    recorder.lock().unwrap().push((content_type, body.to_vec()));
                    ""
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let settings = TelemetrySettings {
        log_level: "info".into(),
        log_format: LogFormat::Json,
        otlp_endpoint: endpoint,
        trace_sample_ratio: 1.0,
    };
    let telemetry =
        tokio::task::spawn_blocking(move || relance_telemetry::init_logging(&settings, "ingestor"))
            .await
            .unwrap()
            .expect("installed");
    {
        let batch =
            tracing::info_span!("kafka.batch", records = 2, first = "billing.invoices/3@42");
        let _entered = batch.enter();
        let delivery = tracing::info_span!(
            "delivery",
            reminder_id = "0b7e1c9a-5f7d-4c43-9a39-2f1f0f6a1d11"
        );
        let _inner = delivery.enter();
        tracing::info!("inside");
    }
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();

    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "the collector received the spans");
    let (content_type, _) = &received[0];
    assert_eq!(content_type, "application/x-protobuf");
    let bodies: Vec<u8> = received.iter().flat_map(|(_, body)| body.clone()).collect();
    let contains = |needle: &str| {
        bodies
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    for expected in [
        "kafka.batch",
        "billing.invoices/3@42",
        "delivery",
        "0b7e1c9a-5f7d-4c43-9a39-2f1f0f6a1d11",
        "relance-ingestor",
    ] {
        assert!(
            contains(expected),
            "{expected} is in what the collector received"
        );
    }
}
