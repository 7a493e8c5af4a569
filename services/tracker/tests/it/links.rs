//! Signed links: a forged link never changes state, a GET never changes state (it is a click),
//! a POST acts once, an expired link offers a fresh one, and no link redirects anywhere its
//! token does not say. Opens and clicks count people, not the software around them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use relance_links::{LinkAction, LinkSigner};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    claims, client, count, fresh_settings, invoice_state, pool, sent_reminder, spawn_tracker, url,
};

fn form_for(action: LinkAction) -> Vec<(&'static str, String)> {
    match action {
        LinkAction::AlreadyPaid => vec![("reference", "VIR-2026-11-30".into())],
        LinkAction::Dispute => vec![
            ("reason", "incorrect_amount".into()),
            ("message", "The discount is missing.".into()),
        ],
        LinkAction::PromiseToPay => vec![(
            "promised_on",
            (chrono::Utc::now().date_naive() + chrono::Days::new(10)).to_string(),
        )],
        _ => vec![("installments", "3".into())],
    }
}

/// `token` with its claims part replaced (signature kept).
fn tampered(token: &str, change: impl Fn(&mut serde_json::Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    change(&mut claims);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{}.{body}.{}", parts[0], parts[1], parts[3])
}

#[tokio::test]
async fn forged_tampered_and_misdirected_links_get_a_plain_404_and_change_nothing() {
    let settings = fresh_settings("forgery").await;
    let sent = sent_reminder(&settings, "cus_forged", "inv_forged").await;
    let (mut tracker, base) = spawn_tracker(&settings, &[]).await;
    let http = client();
    let genuine = url(&base, &claims(&sent, LinkAction::AlreadyPaid));
    let token = genuine.rsplit('/').next().unwrap().to_string();

    let wrong_key =
        LinkSigner::from_text("dev-2026 another-secret-that-is-long-enough-for-hmac-00").unwrap();
    let unknown_key =
        LinkSigner::from_text("k-unknown relance-development-link-signing-secret-0001").unwrap();
    let mut other_tenant = claims(&sent, LinkAction::AlreadyPaid);
    other_tenant.t = "globex".into();
    let mut other_customer = claims(&sent, LinkAction::AlreadyPaid);
    other_customer.c = "cus_someone_else".into();
    let forgeries: Vec<(&str, String)> = vec![
        (
            "signed with the wrong key",
            wrong_key.url(&base, &claims(&sent, LinkAction::AlreadyPaid)),
        ),
        (
            "signed with an unknown key id",
            unknown_key.url(&base, &claims(&sent, LinkAction::AlreadyPaid)),
        ),
        (
            "invoice changed",
            format!(
                "{base}/l/already-paid/{}",
                tampered(&token, |claims| claims["i"] = "inv_other".into())
            ),
        ),
        (
            "expiry pushed back",
            format!(
                "{base}/l/already-paid/{}",
                tampered(&token, |claims| claims["exp"] = 4_000_000_000i64.into())
            ),
        ),
        (
            "action changed in the claims",
            format!(
                "{base}/l/dispute/{}",
                tampered(&token, |claims| claims["a"] = "dispute".into())
            ),
        ),
        (
            "used on another action's page",
            format!("{base}/l/dispute/{token}"),
        ),
        (
            "signature cut",
            format!("{base}/l/already-paid/{}", &token[..token.len() - 3]),
        ),
        ("not a token", format!("{base}/l/already-paid/hello")),
        ("another tenant", url(&base, &other_tenant)),
        ("another customer", url(&base, &other_customer)),
        (
            "unknown version",
            format!("{base}/l/already-paid/{}", token.replacen("v1.", "v2.", 1)),
        ),
    ];
    for (what, link) in &forgeries {
        for method in ["GET", "POST"] {
            let request = if method == "GET" {
                http.get(link)
            } else {
                http.post(link).form(&form_for(LinkAction::AlreadyPaid))
            };
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 404, "{what} ({method})");
            assert_eq!(
                response.text().await.unwrap(),
                "Not found\n",
                "{what}: the 404 says nothing"
            );
        }
    }
    let pool = pool(&settings);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM customer_actions").await,
        0
    );
    assert_eq!(
        invoice_state(&pool, "inv_forged").await,
        ("not_due".into(), None)
    );
    let (_, metrics) = tracker.get("/metrics").await;
    assert!(
        metrics
            .contains("relance_link_requests_total{outcome=\"not_found\",route=\"already_paid\"}"),
        "{metrics}"
    );
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_get_only_shows_and_a_post_acts_once() {
    let settings = fresh_settings("actions").await;
    let pool = pool(&settings);
    let (mut tracker, base) = spawn_tracker(&settings, &[]).await;
    let http = client();
    let expected = [
        (
            LinkAction::AlreadyPaid,
            "inv_paid_claim",
            "already_paid",
            Some("payment_claimed"),
            Some("verify_payment_claim"),
        ),
        (
            LinkAction::Dispute,
            "inv_disputed",
            "dispute",
            Some("dispute"),
            Some("review_dispute"),
        ),
        (
            LinkAction::PromiseToPay,
            "inv_promised",
            "promise_to_pay",
            Some("promise_to_pay"),
            None,
        ),
        (
            LinkAction::PaymentPlan,
            "inv_plan",
            "payment_plan_request",
            None,
            Some("payment_plan_request"),
        ),
    ];
    for (action, invoice, code, pause, task) in expected {
        let sent = sent_reminder(&settings, &format!("cus_{invoice}"), invoice).await;
        let link = url(&base, &claims(&sent, action));
        // Scanners follow every link: GETs, even repeated, change nothing.
        for _ in 0..3 {
            let page = http
                .get(&link)
                .header("user-agent", "Mozilla/5.0 (compatible; BingPreview/1.0b)")
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 200, "{code}");
            let headers = page.headers().clone();
            assert_eq!(headers["referrer-policy"], "no-referrer");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["x-frame-options"], "DENY");
            assert!(headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'"));
            assert_eq!(headers["cache-control"], "no-store");
            let html = page.text().await.unwrap();
            assert!(
                html.contains("<form method=\"post\">") && html.contains("lang=\"fr\""),
                "{html}"
            );
            assert!(
                html.contains("F-") && html.contains("734,56"),
                "the invoice is shown: {html}"
            );
        }
        assert_eq!(
            count(
                &pool,
                &format!("SELECT count(*) FROM customer_actions WHERE invoice_id = '{invoice}'")
            )
            .await,
            0
        );
        assert_eq!(
            invoice_state(&pool, invoice).await.1,
            None,
            "{code}: a GET does not pause"
        );

        // The customer confirms: the action is recorded, dunning pauses, a task is queued.
        let done = http
            .post(&link)
            .form(&form_for(action))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 200, "{code}");
        let html = done.text().await.unwrap();
        assert!(
            html.contains("C&#x27;est noté") || html.contains("C'est noté"),
            "{html}"
        );
        assert_eq!(count(&pool, &format!("SELECT count(*) FROM customer_actions WHERE invoice_id = '{invoice}' AND action = '{code}'")).await, 1);
        assert_eq!(
            invoice_state(&pool, invoice).await.1.as_deref(),
            pause,
            "{code}"
        );
        let tasks = count(&pool, &format!("SELECT count(*) FROM outbox WHERE topic = '{}' AND convert_from(payload, 'UTF8') LIKE '%{invoice}%'", settings.kafka.topics.tasks)).await;
        assert_eq!(tasks, i64::from(task.is_some()), "{code}");
        if let Some(kind) = task {
            let payload: Vec<u8> = sqlx::query_scalar(&format!("SELECT payload FROM outbox WHERE topic = '{}' AND convert_from(payload, 'UTF8') LIKE '%{invoice}%'", settings.kafka.topics.tasks))
                .fetch_one(&pool)
                .await
                .unwrap();
            let task: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(task["data"]["kind"], kind);
        }
        let events = count(&pool, &format!("SELECT count(*) FROM outbox WHERE topic = '{}' AND convert_from(payload, 'UTF8') LIKE '%relance.dunning.customer_action%{invoice}%'", settings.kafka.topics.events)).await;
        assert_eq!(events, 1, "{code}: one customer_action event");

        // Replayed (a double click, a resubmitted form): nothing more.
        let again = http
            .post(&link)
            .form(&form_for(action))
            .send()
            .await
            .unwrap();
        assert!(
            again.text().await.unwrap().contains("déjà enregistrée"),
            "{code}"
        );
        assert_eq!(
            count(
                &pool,
                &format!("SELECT count(*) FROM customer_actions WHERE invoice_id = '{invoice}'")
            )
            .await,
            1
        );
    }
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn invalid_answers_are_asked_again_and_change_nothing() {
    let settings = fresh_settings("invalid").await;
    let pool = pool(&settings);
    let sent = sent_reminder(&settings, "cus_invalid", "inv_invalid").await;
    let (mut tracker, base) = spawn_tracker(&settings, &[]).await;
    let http = client();
    let far = (chrono::Utc::now().date_naive() + chrono::Days::new(400)).to_string();
    for (action, form) in [
        (LinkAction::PromiseToPay, vec![("promised_on", far)]),
        (
            LinkAction::PromiseToPay,
            vec![("promised_on", "yesterday".to_string())],
        ),
        (
            LinkAction::Dispute,
            vec![("reason", "i_just_dont_want_to".to_string())],
        ),
    ] {
        let response = http
            .post(url(&base, &claims(&sent, action)))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
        assert!(response.text().await.unwrap().contains("role=\"alert\""));
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM customer_actions").await,
        0
    );
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn an_expired_link_offers_a_fresh_reminder_once_a_day() {
    let settings = fresh_settings("expired").await;
    let pool = pool(&settings);
    let sent = sent_reminder(&settings, "cus_expired", "inv_expired").await;
    let (mut tracker, base) = spawn_tracker(&settings, &[]).await;
    let http = client();
    let mut expired = claims(&sent, LinkAction::Dispute);
    expired.exp = chrono::Utc::now().timestamp() - 60;
    let link = url(&base, &expired);
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 410);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Ce lien a expiré") && html.contains("action=\"/l/renew/"),
        "{html}"
    );
    // Posting the expired form acts on nothing.
    let post = http
        .post(&link)
        .form(&[("reason", "quality")])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 410);
    assert_eq!(invoice_state(&pool, "inv_expired").await.1, None);
    // Only an expired action link renews: not one that still works, not the pixel's token (it
    // is in every message's HTML), expired or not, nor a forged one.
    let signer = crate::helpers::signer();
    let token_of = |claims: &relance_links::LinkClaims| signer.sign(claims);
    let mut pixel = claims(&sent, LinkAction::Open);
    let mut expired_pixel = pixel.clone();
    expired_pixel.exp = chrono::Utc::now().timestamp() - 60;
    pixel.exp = chrono::Utc::now().timestamp() + 3_600;
    for (what, token) in [
        (
            "a working action link",
            token_of(&claims(&sent, LinkAction::Dispute)),
        ),
        ("the pixel", token_of(&pixel)),
        ("an expired pixel", token_of(&expired_pixel)),
        ("a forged token", "v1.k.e30.AAAA".to_string()),
    ] {
        let response = http
            .post(format!("{base}/l/renew/{token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{what}");
    }
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT count(*) FROM outbox WHERE topic = '{}'",
                settings.kafka.topics.reminders
            ),
        )
        .await,
        0,
        "nothing re-sent"
    );
    let renew = link.replace("/l/dispute/", "/l/renew/");
    for _ in 0..2 {
        let response = http.post(&renew).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("nouveau message"));
    }
    let commands = count(
        &pool,
        &format!(
            "SELECT count(*) FROM outbox WHERE topic = '{}'",
            settings.kafka.topics.reminders
        ),
    )
    .await;
    assert_eq!(commands, 1, "one fresh reminder a day, whatever the clicks");
    let payload: Vec<u8> = sqlx::query_scalar(&format!(
        "SELECT payload FROM outbox WHERE topic = '{}'",
        settings.kafka.topics.reminders
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    let command: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert!(
        command["data"]["idempotency_key"]
            .as_str()
            .unwrap()
            .contains(":renewal:"),
        "{command}"
    );
    relance_contracts::decode::decode::<relance_contracts::Command>(&payload)
        .expect("a valid reminder command");
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn links_redirect_only_where_their_token_says_and_the_pixel_is_an_image() {
    let settings = fresh_settings("redirects").await;
    let pool = pool(&settings);
    let sent = sent_reminder(&settings, "cus_redirect", "inv_redirect").await;
    let (mut tracker, base) = spawn_tracker(&settings, &[]).await;
    let http = client();
    let browser =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";

    let pay = http
        .get(url(&base, &claims(&sent, LinkAction::Pay)))
        .header("user-agent", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 303);
    assert_eq!(
        pay.headers()["location"],
        "https://pay.acme.example/i/inv_redirect"
    );

    let mut click = claims(&sent, LinkAction::Click);
    click.u = Some("https://pay.acme.example/i/inv_redirect".into());
    let followed = http
        .get(url(&base, &click))
        .header("user-agent", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(
        followed.headers()["location"],
        "https://pay.acme.example/i/inv_redirect"
    );
    // Changing the target breaks the signature: no open redirect.
    let token = url(&base, &click).rsplit('/').next().unwrap().to_string();
    let parts: Vec<&str> = token.split('.').collect();
    let mut tampered: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    tampered["u"] = "https://evil.example/phish".into();
    let forged = format!(
        "{base}/l/c/{}.{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap()),
        parts[3]
    );
    assert_eq!(http.get(forged).send().await.unwrap().status(), 404);

    let pixel = http
        .get(url(&base, &claims(&sent, LinkAction::Open)))
        .header("user-agent", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(pixel.status(), 200);
    assert_eq!(pixel.headers()["content-type"], "image/gif");
    assert_eq!(pixel.bytes().await.unwrap().len(), 43);
    // A prefetching proxy is counted apart.
    http.get(url(&base, &claims(&sent, LinkAction::Open)))
        .header("user-agent", "Mozilla/5.0")
        .send()
        .await
        .unwrap();

    let interactions: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT kind, classification, machine_reason, link FROM interactions ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        interactions,
        vec![
            (
                "click".to_string(),
                "human".to_string(),
                None,
                Some("pay".to_string())
            ),
            // The invoice's own payment link counts as pay.
            (
                "click".to_string(),
                "human".to_string(),
                None,
                Some("pay".to_string())
            ),
            ("open".to_string(), "human".to_string(), None, None),
            (
                "open".to_string(),
                "machine".to_string(),
                Some("prefetch".to_string()),
                None
            ),
        ]
    );
    let (_, metrics) = tracker.get("/metrics").await;
    assert!(metrics.contains("relance_reminders_opened_total{channel=\"email\",segment=\"standard\",step=\"first_reminder\",template=\"first_reminder\",variant=\"\"} 1"), "{metrics}");
    assert!(
        metrics
            .contains("relance_reminder_opens_total{channel=\"email\",classification=\"machine\""),
        "{metrics}"
    );
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn one_client_cannot_hammer_the_links() {
    let settings = fresh_settings("ratelimit").await;
    let sent = sent_reminder(&settings, "cus_rate", "inv_rate").await;
    let (mut tracker, base) = spawn_tracker(
        &settings,
        &[("RELANCE__TRACKER__RATE_LIMIT_PER_MINUTE", "20".into())],
    )
    .await;
    let http = client();
    let link = url(&base, &claims(&sent, LinkAction::Dispute));
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(http.get(&link).send().await.unwrap().status().as_u16());
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_customer_in_noumea_is_offered_promise_dates_from_their_own_tomorrow() {
    let settings = fresh_settings("noumea").await;
    let sent = sent_reminder(&settings, "cus_noumea", "inv_noumea").await;
    // The customer lives in Nouméa (UTC+11).
    let at = chrono::Utc::now();
    relance_testkit::seed(
        &settings,
        vec![relance_testkit::customer_event_in(
            "acme",
            "cus_noumea",
            false,
            at,
            "Pacific/Noumea",
        )],
        at,
    )
    .await;
    // 20:00 UTC on 5 December is already 07:00 on 6 December in Nouméa.
    let (mut tracker, base) = spawn_tracker(
        &settings,
        &[
            (
                "RELANCE__RUNTIME__CLOCK__START",
                "2026-12-05T20:00:00Z".into(),
            ),
            (
                "RELANCE__RUNTIME__CLOCK__EPOCH",
                chrono::Utc::now().to_rfc3339(),
            ),
        ],
    )
    .await;
    let page = client()
        .get(url(&base, &claims(&sent, LinkAction::PromiseToPay)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("min=\"2026-12-07\""),
        "the earliest promise is the customer's tomorrow: {page}"
    );
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The links of a reminder a person can click, with the label their clicks are recorded under.
const ACTION_LINKS: [(LinkAction, &str); 5] = [
    (LinkAction::Pay, "pay"),
    (LinkAction::AlreadyPaid, "already_paid"),
    (LinkAction::Dispute, "dispute"),
    (LinkAction::PromiseToPay, "promise_to_pay"),
    (LinkAction::PaymentPlan, "payment_plan"),
];

/// The delivery labels of every reminder `sent_reminder` makes, as /metrics prints them.
const DELIVERY: &str =
    "segment=\"standard\",step=\"first_reminder\",template=\"first_reminder\",variant=\"\"";

/// The clicks of a reminder, in order: link, classification, machine reason.
async fn clicks_of(pool: &PgPool, reminder: Uuid) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT link, classification, machine_reason FROM interactions
         WHERE reminder_id = $1 AND kind = 'click' ORDER BY id",
    )
    .bind(reminder)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A row of [`clicks_of`].
fn click(
    link: &str,
    classification: &str,
    reason: Option<&str>,
) -> (String, String, Option<String>) {
    (
        link.to_string(),
        classification.to_string(),
        reason.map(str::to_string),
    )
}

async fn clicked_by_a_person(pool: &PgPool, delivery: Uuid) -> bool {
    let first: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT first_clicked_at FROM deliveries WHERE delivery_id = $1")
            .bind(delivery)
            .fetch_one(pool)
            .await
            .unwrap();
    first.is_some()
}

/// The value of the series `name{labels}` in /metrics text, 0 when absent.
fn series(metrics: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn every_link_get_is_a_click_of_its_link_and_never_an_action() {
    let settings = fresh_settings("every-link").await;
    let pool = pool(&settings);
    let (mut tracker, base) = spawn_tracker(
        &settings,
        &[("RELANCE__TRACKER__RATE_LIMIT_PER_MINUTE", "6000".into())],
    )
    .await;
    let http = client();
    for (action, label) in ACTION_LINKS {
        // A person reading a reminder clicks one of its links.
        let sent = sent_reminder(
            &settings,
            &format!("cus_get_{label}"),
            &format!("inv_get_{label}"),
        )
        .await;
        let response = http
            .get(url(&base, &claims(&sent, action)))
            .header("user-agent", BROWSER)
            .send()
            .await
            .unwrap();
        let expected_status: u16 = if action == LinkAction::Pay { 303 } else { 200 };
        assert_eq!(response.status(), expected_status, "{label}");
        assert_eq!(
            clicks_of(&pool, sent.reminder_id).await,
            vec![click(label, "human", None)],
            "{label}: the GET is a click of its link"
        );
        assert!(
            clicked_by_a_person(&pool, sent.delivery_id).await,
            "{label}"
        );
        assert_eq!(
            invoice_state(&pool, &sent.invoice).await.1,
            None,
            "{label}: a GET changes nothing"
        );
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM customer_actions").await,
        0,
        "a click is never an action"
    );
    let (_, metrics) = tracker.get("/metrics").await;
    for (_, label) in ACTION_LINKS {
        assert_eq!(
            series(
                &metrics,
                "relance_reminder_clicks_total",
                &format!("channel=\"email\",classification=\"human\",link=\"{label}\",{DELIVERY}")
            ),
            1.0,
            "{label}: {metrics}"
        );
    }
    assert_eq!(
        series(
            &metrics,
            "relance_reminders_clicked_total",
            &format!("channel=\"email\",{DELIVERY}")
        ),
        5.0,
        "{metrics}"
    );
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_scanner_following_every_link_is_counted_apart_from_people() {
    let settings = fresh_settings("scanners").await;
    let pool = pool(&settings);
    let (mut tracker, base) = spawn_tracker(
        &settings,
        &[("RELANCE__TRACKER__RATE_LIMIT_PER_MINUTE", "6000".into())],
    )
    .await;
    let http = client();

    // A scanner an hour after sending (past the too-soon window) with a browser's user agent,
    // as Safe Links' detonation has: every link of the message within a second.
    let scanned = sent_reminder(&settings, "cus_scanned", "inv_scanned").await;
    for (action, label) in ACTION_LINKS {
        let response = http
            .get(url(&base, &claims(&scanned, action)))
            .header("user-agent", BROWSER)
            .send()
            .await
            .unwrap();
        assert!(
            [200, 303].contains(&response.status().as_u16()),
            "{label}: {}",
            response.status()
        );
    }
    let burst: Vec<_> = ACTION_LINKS
        .iter()
        .map(|(_, label)| click(label, "machine", Some("burst")))
        .collect();
    assert_eq!(
        clicks_of(&pool, scanned.reminder_id).await,
        burst,
        "the first link looked like a person's until the others came"
    );
    assert!(!clicked_by_a_person(&pool, scanned.delivery_id).await);

    // A HEAD is a link checker's, whatever it says it is; it is answered all the same.
    let checked = sent_reminder(&settings, "cus_checked", "inv_checked").await;
    let head = http
        .head(url(&base, &claims(&checked, LinkAction::Dispute)))
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    // A scanner that names itself.
    let named = sent_reminder(&settings, "cus_named", "inv_named").await;
    http.get(url(&base, &claims(&named, LinkAction::PromiseToPay)))
        .header("user-agent", "Mozilla/5.0 (compatible; BingPreview/1.0b)")
        .send()
        .await
        .unwrap();
    assert_eq!(
        clicks_of(&pool, checked.reminder_id).await,
        vec![click("dispute", "machine", Some("head_request"))]
    );
    assert_eq!(
        clicks_of(&pool, named.reminder_id).await,
        vec![click("promise_to_pay", "machine", Some("known_scanner"))]
    );

    // A person clicks pay twice (a double click is not a burst), from Outlook's own fetch of
    // the link then the browser's.
    let reader = sent_reminder(&settings, "cus_reader", "inv_reader").await;
    let office =
        "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; Trident/7.0; ms-office; MSOffice 16)";
    for agent in [office, BROWSER] {
        let response = http
            .get(url(&base, &claims(&reader, LinkAction::Pay)))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
    }
    assert_eq!(
        clicks_of(&pool, reader.reminder_id).await,
        vec![click("pay", "human", None), click("pay", "human", None)]
    );
    assert!(clicked_by_a_person(&pool, reader.delivery_id).await);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM customer_actions").await,
        0
    );

    // Human and machine side by side: the scanner's first click was counted human when it came
    // and is taken back; one reminder in two was clicked by a person.
    let (_, metrics) = tracker.get("/metrics").await;
    let clicks = |classification: &str, link: &str| {
        series(
            &metrics,
            "relance_reminder_clicks_total",
            &format!(
                "channel=\"email\",classification=\"{classification}\",link=\"{link}\",{DELIVERY}"
            ),
        )
    };
    let taken_back = |link: &str| {
        series(
            &metrics,
            "relance_reminder_clicks_reclassified_total",
            &format!("channel=\"email\",link=\"{link}\",{DELIVERY}"),
        )
    };
    assert_eq!(clicks("human", "pay") - taken_back("pay"), 2.0, "{metrics}");
    assert_eq!(
        clicks("machine", "pay") + taken_back("pay"),
        1.0,
        "{metrics}"
    );
    assert_eq!(clicks("machine", "dispute"), 2.0, "{metrics}");
    assert_eq!(clicks("human", "dispute"), 0.0, "{metrics}");
    let reminders = format!("channel=\"email\",{DELIVERY}");
    let clicked = series(&metrics, "relance_reminders_clicked_total", &reminders);
    let withdrawn = series(
        &metrics,
        "relance_reminders_click_withdrawn_total",
        &reminders,
    );
    assert_eq!((clicked, withdrawn), (2.0, 1.0), "{metrics}");
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn outlook_and_gmail_opens_are_people_and_apple_privacy_prefetches_are_not() {
    let settings = fresh_settings("opens").await;
    let pool = pool(&settings);
    let (mut tracker, base) = spawn_tracker(&settings, &[]).await;
    let http = client();
    let readers = [
        (
            "outlook",
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
            ("human", None),
        ),
        (
            "gmail",
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            ("human", None),
        ),
        // Apple Mail Privacy Protection loads the pixel when the message arrives, read or not.
        ("apple_privacy", "Mozilla/5.0", ("machine", Some("prefetch"))),
    ];
    for (who, agent, (classification, reason)) in readers {
        let sent = sent_reminder(&settings, &format!("cus_{who}"), &format!("inv_{who}")).await;
        let pixel = http
            .get(url(&base, &claims(&sent, LinkAction::Open)))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(pixel.status(), 200, "{who}");
        let open: (String, Option<String>) = sqlx::query_as(
            "SELECT classification, machine_reason FROM interactions
             WHERE reminder_id = $1 AND kind = 'open'",
        )
        .bind(sent.reminder_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            open,
            (classification.to_string(), reason.map(str::to_string)),
            "{who}"
        );
    }
    let (_, metrics) = tracker.get("/metrics").await;
    assert_eq!(
        series(
            &metrics,
            "relance_reminders_opened_total",
            &format!("channel=\"email\",{DELIVERY}")
        ),
        2.0,
        "Outlook and Gmail readers open; the Apple prefetch does not: {metrics}"
    );
    assert_eq!(
        series(
            &metrics,
            "relance_reminder_opens_total",
            &format!("channel=\"email\",classification=\"machine\",{DELIVERY}")
        ),
        1.0,
        "{metrics}"
    );
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

/// Issue 14, items 9 and 13: a pay link never redirects off the hosts the tenant takes
/// payments on, and an invoice without a usable payment page tells the customer how to pay.
#[tokio::test]
async fn a_pay_link_off_the_tenants_payment_hosts_shows_how_to_pay_instead() {
    let settings = fresh_settings("pay_hosts").await;
    let sent = sent_reminder(&settings, "cus_hosts", "inv_hosts").await;
    let (mut tracker, base) = spawn_tracker(
        &settings,
        &[
            (
                "RELANCE__SENDER__TENANTS__ACME__PAYMENT_HOSTS",
                "pay.elsewhere.example".into(),
            ),
            (
                "RELANCE__SENDER__TENANTS__ACME__PAYMENT_INSTRUCTIONS",
                "Bank transfer to IBAN FR76 3000 6000 0112 3456 7890 189\nBIC AGRIFRPP".into(),
            ),
        ],
    )
    .await;
    let http = client();
    let pay = http
        .get(url(&base, &claims(&sent, LinkAction::Pay)))
        .header(
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 200, "no redirect to pay.acme.example");
    let page = pay.text().await.unwrap();
    assert!(
        page.contains("IBAN FR76 3000 6000 0112 3456 7890 189"),
        "{page}"
    );
    assert!(page.contains("inv_hosts") || page.contains("F-"), "{page}");
    assert!(
        !page.contains("Nothing to do") && !page.contains("Rien à faire"),
        "{page}"
    );
    let (_, metrics) = tracker.get("/metrics").await;
    assert!(
        metrics.contains(
            r#"relance_link_requests_total{outcome="payment_url_refused",route="pay"} 1"#
        ),
        "{metrics}"
    );
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}

/// Issue 14, item 13: "too many requests" speaks the customer's language.
#[tokio::test]
async fn the_too_many_requests_answer_is_in_the_customers_language() {
    let settings = fresh_settings("ratelimit_locale").await;
    let sent = sent_reminder(&settings, "cus_rate_fr", "inv_rate_fr").await;
    let (mut tracker, base) = spawn_tracker(
        &settings,
        &[("RELANCE__TRACKER__RATE_LIMIT_PER_MINUTE", "20".into())],
    )
    .await;
    let http = client();
    let link = url(&base, &claims(&sent, LinkAction::Dispute));
    let mut refused = None;
    for _ in 0..12 {
        let response = http
            .get(&link)
            .header("accept-language", "fr-FR,fr;q=0.9,en;q=0.5")
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the limit is reached");
    assert_eq!(refused.headers()["content-language"], "fr");
    let text = refused.text().await.unwrap();
    assert!(text.contains("Réessayez"), "{text}");
    tracker
        .signal_and_wait("TERM", std::time::Duration::from_secs(20))
        .await;
}
