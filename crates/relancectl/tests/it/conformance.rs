//! Issue 14, item 6: every refusal of the admin API is the JSON error docs/admin-api.yaml
//! documents, with its status: 400 for what cannot be read, 413 for a body too large; never
//! axum's plain-text 415 or 422, never a 500 for a character PostgreSQL refuses.

use relance_config::ServiceName;
use relance_testkit::{create_unique_database, create_unique_topics, test_settings};

const TOKEN: &str = "dev-only-admin-token-not-for-production";

async fn admin_api() -> String {
    let mut settings = create_unique_database(&test_settings(ServiceName::Scheduler)).await;
    settings.kafka.topics = create_unique_topics(&settings, "conformance", 1).await;
    let pool = relance_storage::lazy_pool(&settings.database, "test");
    crate::serve_admin_api(&settings, pool, chrono::Utc::now()).await
}

#[tokio::test]
async fn every_refusal_is_a_documented_json_error() {
    let url = admin_api().await;
    let http = reqwest::Client::new();
    let reminder = "5b0c2d9e-1f3a-4c6b-8d7e-000000000001";
    let json = Some("application/json");
    let big = format!(r#"{{"reason": "{}"}}"#, "x".repeat(100 * 1024));
    let cases: Vec<(&str, String, Option<&str>, String, u16)> = vec![
        (
            "POST",
            "/v1/invoices/inv_1/pause".into(),
            json,
            r#"{"reason": "x", "colour": "red"}"#.into(),
            400,
        ),
        (
            "POST",
            "/v1/invoices/inv_1/pause".into(),
            json,
            r#"{"reason": "x", "until": "31/12/2026"}"#.into(),
            400,
        ),
        (
            "POST",
            "/v1/invoices/inv_1/pause".into(),
            json,
            r#"["x"]"#.into(),
            400,
        ),
        (
            "POST",
            "/v1/invoices/inv_1/pause".into(),
            json,
            r#"{"reason": "a\u0000b"}"#.into(),
            400,
        ),
        (
            "POST",
            "/v1/invoices/inv_1/pause".into(),
            json,
            r#"{"reason": "   "}"#.into(),
            400,
        ),
        (
            "POST",
            "/v1/invoices/inv_1/pause".into(),
            json,
            "{".into(),
            400,
        ),
        (
            "POST",
            "/v1/invoices/inv_1/pause".into(),
            None,
            r#"{"reason": "x"}"#.into(),
            400,
        ),
        ("POST", "/v1/invoices/inv_1/pause".into(), json, big, 413),
        (
            "POST",
            "/v1/invoices/inv_1/cancel-promise".into(),
            json,
            r#"{"reason": "\u00a6q\u0000"}"#.into(),
            400,
        ),
        (
            "POST",
            format!("/v1/approvals/{reminder}/approve"),
            json,
            r#"{"reason": "x"}"#.into(),
            400,
        ),
        (
            "POST",
            format!("/v1/approvals/{reminder}/reject"),
            json,
            r#"{"note": "x"}"#.into(),
            400,
        ),
        (
            "POST",
            "/v1/dead-letters/replay".into(),
            json,
            r#"{"ids": [], "note": "fixed"}"#.into(),
            400,
        ),
        (
            "POST",
            "/v1/dead-letters/replay".into(),
            json,
            r#"{"reason": "x", "note": ""}"#.into(),
            400,
        ),
        (
            "GET",
            "/v1/approvals?limit=100000".into(),
            None,
            String::new(),
            400,
        ),
        (
            "GET",
            "/v1/approvals?limit=0".into(),
            None,
            String::new(),
            400,
        ),
        (
            "GET",
            "/v1/approvals?limit=ten".into(),
            None,
            String::new(),
            400,
        ),
        (
            "GET",
            "/v1/dead-letters?since=yesterday".into(),
            None,
            String::new(),
            400,
        ),
        (
            "GET",
            "/v1/dead-letters?limit=1001".into(),
            None,
            String::new(),
            400,
        ),
    ];
    for (method, path, content_type, body, expected) in cases {
        let mut request = http
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .bearer_auth(TOKEN);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if method == "POST" {
            request = request.body(body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let media = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await.unwrap();
        let shown: String = body.chars().take(60).collect();
        assert_eq!(status, expected, "{method} {path} {shown}: {text}");
        assert!(
            media.starts_with("application/json"),
            "{method} {path}: {media} {text}"
        );
        let error: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            error["error"].is_string() && error["message"].is_string(),
            "{text}"
        );
    }
}
