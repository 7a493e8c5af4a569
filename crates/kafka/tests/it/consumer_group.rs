use std::collections::BTreeSet;
use std::time::Duration;

use relance_contracts::{decode, BillingEvent, CLOUDEVENTS_CONTENT_TYPE};
use relance_testkit::wait_for;

use relance_kafka::RunnerOptions;

use crate::{
    committed_offsets, fixture, group_name, record, start_consumer, start_lanes_with, Recorder,
};

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

/// A member holding records back for a full lane loses partitions to a new member, and may get
/// some back: every record is still handled once, in its partition's order, by one member.
#[tokio::test]
async fn records_held_back_across_a_rebalance_are_handled_once_in_order() {
    let partitions = 4;
    let fixture = fixture("held-rebalance", partitions).await;
    let topic = fixture.topics.customers.clone();
    let group = group_name("held-rebalance");
    let keys = 16;
    let per_key = 40;
    for key in 0..keys {
        for index in 0..per_key {
            fixture
                .producer
                .send(&record(
                    &topic,
                    &format!("cus_{key}"),
                    format!("cus_{key} {index:02}").as_bytes(),
                    &[],
                ))
                .await
                .expect("produce");
        }
    }
    let total = keys * per_key;
    let options = RunnerOptions {
        batch_max_messages: 20,
        batch_max_wait: Duration::from_millis(200),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
    };
    // A slow member with two lanes: it holds records back while it works.
    let slow = Recorder {
        hold: Some(Duration::from_millis(150)),
        ..Recorder::default()
    };
    let first: Vec<Recorder> = (0..2)
        .map(|_| Recorder {
            seen: Default::default(),
            ..slow.clone()
        })
        .collect();
    let member_a = start_lanes_with(&fixture, &group, &[&topic], first.clone(), options.clone());
    wait_for(Duration::from_secs(60), "the first member at work", || {
        let first = first.clone();
        async move {
            (first.iter().map(|lane| lane.records().len()).sum::<usize>() >= 60).then_some(())
        }
    })
    .await;
    let second = Recorder::default();
    let member_b = start_lanes_with(&fixture, &group, &[&topic], vec![second.clone()], options);
    let handled = || {
        first
            .iter()
            .chain(std::iter::once(&second))
            .map(|recorder| recorder.records())
            .collect::<Vec<_>>()
    };
    wait_for(Duration::from_secs(90), "every record handled", || {
        let every: usize = handled().iter().map(Vec::len).sum();
        async move { (every >= total).then_some(()) }
    })
    .await;
    // Anything handled twice would show up a moment later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    member_a.stop().await.expect("stop a");
    member_b.stop().await.expect("stop b");

    let lists = handled();
    assert!(!lists[2].is_empty(), "the second member got partitions");
    let mut once = BTreeSet::new();
    for list in &lists {
        for record in list {
            assert!(
                once.insert((record.partition, record.offset)),
                "partition {} offset {} handled twice",
                record.partition,
                record.offset
            );
        }
        for partition in 0..partitions {
            let offsets: Vec<i64> = list
                .iter()
                .filter(|record| record.partition == partition)
                .map(|record| record.offset)
                .collect();
            assert!(
                offsets.windows(2).all(|pair| pair[0] < pair[1]),
                "partition {partition} out of order: {offsets:?}"
            );
        }
    }
    assert_eq!(once.len(), total, "every record handled");
    let committed: i64 = committed_offsets(&fixture.settings, &group, &topic, partitions)
        .into_iter()
        .map(|offset| offset.max(0))
        .sum();
    assert_eq!(
        committed,
        i64::try_from(total).unwrap(),
        "everything committed"
    );
}

#[tokio::test]
async fn a_consumer_reports_the_partitions_its_group_gives_it_and_none_before() {
    let fixture = fixture("assigned", 3).await;
    let invoices = fixture.topics.invoices.clone();
    let payments = fixture.topics.payments.clone();
    let group = group_name("assigned");
    let registry = prometheus::Registry::new();
    let runner = relance_kafka::ConsumerRunner::new(
        &fixture.settings.kafka,
        "test",
        &group,
        &[&invoices, &payments],
        RunnerOptions::default(),
        relance_kafka::KafkaMetrics::register(&registry).expect("metrics"),
    )
    .expect("runner");
    let held = |topic: &str| {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == "relance_kafka_assigned_partitions")
            .flat_map(|family| family.get_metric().iter())
            .find(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|label| label.value() == topic)
            })
            .map(|metric| metric.get_gauge().get_value())
    };
    // Before the first poll each topic read is there, at 0: an alert can see it.
    assert_eq!((held(&invoices), held(&payments)), (Some(0.0), Some(0.0)));

    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(runner.run_lanes(vec![Recorder::default()], shutdown.clone()));
    wait_for(Duration::from_secs(30), "the group's assignment", || {
        let both = (held(&invoices), held(&payments));
        async move { (both == (Some(3.0), Some(3.0))).then_some(()) }
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("consumer stops in time")
        .expect("consumer task")
        .expect("clean stop");
}
