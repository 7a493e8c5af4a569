use std::collections::BTreeSet;
use std::time::Duration;

use relance_contracts::{decode, BillingEvent, CLOUDEVENTS_CONTENT_TYPE};
use relance_testkit::wait_for;

use crate::{committed_offsets, fixture, group_name, record, start_consumer, Recorder};

fn invoice_issued(event_id: &str, customer: &str) -> Vec<u8> {
    let example = std::fs::read_to_string(
        relance_testkit::repo_root().join("proto/examples/billing.invoice.issued.v1.json"),
    )
    .expect("example");
    let mut json: serde_json::Value = serde_json::from_str(&example).expect("json");
    json["id"] = event_id.into();
    json["partitionkey"] = customer.into();
    json["data"]["customer_id"] = customer.into();
    serde_json::to_vec(&json).expect("serialise")
}

#[tokio::test]
async fn contract_events_keep_keys_and_headers_and_a_restarted_consumer_resumes_from_its_commit() {
    let fixture = fixture("resume", 3).await;
    let topic = fixture.topics.invoices.clone();
    let group = group_name("resume");

    // Arrange: ten contract events for three customers, keyed by customer id.
    for index in 0..10 {
        let customer = format!("cus_{}", index % 3);
        let payload = invoice_issued(&format!("evt_first_{index}"), &customer);
        let outgoing = record(
            &topic,
            &customer,
            &payload,
            &[
                ("content-type", CLOUDEVENTS_CONTENT_TYPE.as_bytes()),
                ("traceparent", b"00-abc-def-01"),
            ],
        );
        fixture.producer.send(&outgoing).await.expect("produce");
    }

    // Act: consume them with a consumer group, then stop.
    let recorder = Recorder::default();
    let consumer = start_consumer(&fixture, &group, &[&topic], recorder.clone());
    wait_for(Duration::from_secs(30), "the first ten events", || {
        let recorder = recorder.clone();
        async move { (recorder.records().len() >= 10).then_some(()) }
    })
    .await;
    consumer.stop().await.expect("clean stop");

    // Assert: keys, headers and payloads arrive intact; one customer stays on one partition.
    let first = recorder.records();
    assert_eq!(first.len(), 10);
    for consumed in &first {
        let event = decode::<BillingEvent>(consumed.payload.as_deref().expect("payload"))
            .expect("contract event");
        let BillingEvent::InvoiceIssued(invoice) = event.data else {
            panic!("wrong type")
        };
        assert_eq!(
            consumed.key.as_deref(),
            Some(invoice.customer_id.as_str().as_bytes())
        );
        assert_eq!(
            consumed.header("content-type"),
            Some(CLOUDEVENTS_CONTENT_TYPE.as_bytes())
        );
        assert_eq!(consumed.header("traceparent"), Some(&b"00-abc-def-01"[..]));
    }
    for customer in ["cus_0", "cus_1", "cus_2"] {
        let partitions: BTreeSet<i32> = first
            .iter()
            .filter(|consumed| consumed.key.as_deref() == Some(customer.as_bytes()))
            .map(|consumed| consumed.partition)
            .collect();
        assert_eq!(partitions.len(), 1, "{customer} spread over {partitions:?}");
    }
    let committed: i64 = committed_offsets(&fixture.settings, &group, &topic, 3)
        .into_iter()
        .map(|offset| offset.max(0))
        .sum();
    assert_eq!(committed, 10, "every consumed record is committed");

    // Act: five more events while no consumer runs, then restart the group.
    for index in 0..5 {
        let customer = format!("cus_{}", index % 3);
        let payload = invoice_issued(&format!("evt_second_{index}"), &customer);
        fixture
            .producer
            .send(&record(&topic, &customer, &payload, &[]))
            .await
            .expect("produce");
    }
    let recorder = Recorder::default();
    let consumer = start_consumer(&fixture, &group, &[&topic], recorder.clone());
    wait_for(Duration::from_secs(30), "the five new events", || {
        let recorder = recorder.clone();
        async move { (recorder.records().len() >= 5).then_some(()) }
    })
    .await;
    // Give a replay of old records the chance to show up before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    consumer.stop().await.expect("clean stop");

    // Assert: only the new ones, from the committed offsets on.
    let second = recorder.records();
    let ids: BTreeSet<String> = second
        .iter()
        .map(|consumed| {
            let event = decode::<BillingEvent>(consumed.payload.as_deref().expect("payload"))
                .expect("decodes");
            event.id.to_string()
        })
        .collect();
    let expected: BTreeSet<String> = (0..5).map(|index| format!("evt_second_{index}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(second.len(), 5, "nothing consumed twice");
}

#[tokio::test]
async fn two_consumers_in_one_group_share_the_partitions() {
    let fixture = fixture("share", 4).await;
    let topic = fixture.topics.payments.clone();
    let group = group_name("share");

    let first = Recorder::default();
    let second = Recorder::default();
    let consumer_a = start_consumer(&fixture, &group, &[&topic], first.clone());
    let consumer_b = start_consumer(&fixture, &group, &[&topic], second.clone());

    // Produce continuously while the group forms, until both members have received records.
    let mut produced = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        for _ in 0..20 {
            let key = format!("cus_{produced}");
            fixture
                .producer
                .send(&record(
                    &topic,
                    &key,
                    format!("payment {produced}").as_bytes(),
                    &[],
                ))
                .await
                .expect("produce");
            produced += 1;
        }
        if !first.records().is_empty() && !second.records().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both members never got partitions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(Duration::from_secs(30), "every record", || {
        let (first, second) = (first.clone(), second.clone());
        async move {
            let unique: BTreeSet<(i32, i64)> = first
                .records()
                .iter()
                .chain(second.records().iter())
                .map(|consumed| (consumed.partition, consumed.offset))
                .collect();
            (unique.len() == produced).then_some(())
        }
    })
    .await;
    consumer_a.stop().await.expect("stop a");
    consumer_b.stop().await.expect("stop b");

    let partitions_a: BTreeSet<i32> = first
        .records()
        .iter()
        .map(|consumed| consumed.partition)
        .collect();
    let partitions_b: BTreeSet<i32> = second
        .records()
        .iter()
        .map(|consumed| consumed.partition)
        .collect();
    assert!(!partitions_a.is_empty() && !partitions_b.is_empty());
    let total: i64 = committed_offsets(&fixture.settings, &group, &topic, 4)
        .into_iter()
        .map(|offset| offset.max(0))
        .sum();
    assert_eq!(total, produced as i64, "the group committed every record");
}
