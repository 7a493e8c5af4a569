use std::time::Duration;

use relance_kafka::RunnerOptions;
use relance_testkit::wait_for;

use crate::{
    committed_offsets, fixture, group_name, record, start_consumer, start_lanes, start_lanes_with,
    start_with_settings, Recorder,
};

#[tokio::test]
async fn a_transient_failure_is_retried_without_skipping_or_committing_early() {
    let fixture = fixture("retry", 1).await;
    let topic = fixture.topics.customers.clone();
    let group = group_name("retry");
    for index in 0..3 {
        fixture
            .producer
            .send(&record(
                &topic,
                "cus_1",
                format!("r{index}").as_bytes(),
                &[],
            ))
            .await
            .expect("produce");
    }
    let recorder = Recorder::default();
    *recorder.transient_failures_left.lock().unwrap() = 3;
    let consumer = start_consumer(&fixture, &group, &[&topic], recorder.clone());
    wait_for(
        Duration::from_secs(30),
        "the records after the outage",
        || {
            let recorder = recorder.clone();
            async move { (recorder.records().len() >= 3).then_some(()) }
        },
    )
    .await;
    consumer.stop().await.expect("clean stop");
    let payloads: Vec<Vec<u8>> = recorder
        .records()
        .into_iter()
        .map(|consumed| consumed.payload.unwrap_or_default())
        .collect();
    assert_eq!(
        payloads,
        vec![b"r0".to_vec(), b"r1".to_vec(), b"r2".to_vec()],
        "in order, none skipped"
    );
    assert_eq!(
        *recorder.transient_failures_left.lock().unwrap(),
        0,
        "the failures happened"
    );
    assert_eq!(
        committed_offsets(&fixture.settings, &group, &topic, 1),
        vec![3]
    );
}

#[tokio::test]
async fn a_fatal_failure_stops_the_runner_without_committing() {
    let fixture = fixture("fatal", 1).await;
    let topic = fixture.topics.customers.clone();
    let group = group_name("fatal");
    fixture
        .producer
        .send(&record(&topic, "cus_1", b"poison", &[]))
        .await
        .expect("produce");
    let recorder = Recorder::default();
    *recorder.fatal.lock().unwrap() = true;
    let consumer = start_consumer(&fixture, &group, &[&topic], recorder);
    let result = tokio::time::timeout(Duration::from_secs(30), consumer.task)
        .await
        .expect("stops by itself")
        .expect("task");
    assert!(
        matches!(result, Err(relance_kafka::ConsumerError::Handler(_))),
        "{result:?}"
    );
    assert_eq!(
        committed_offsets(&fixture.settings, &group, &topic, 1),
        vec![-1]
    );

    // The record is still there for the next member.
    let recorder = Recorder::default();
    let consumer = start_consumer(&fixture, &group, &[&topic], recorder.clone());
    wait_for(Duration::from_secs(30), "the redelivered record", || {
        let recorder = recorder.clone();
        async move { (!recorder.records().is_empty()).then_some(()) }
    })
    .await;
    consumer.stop().await.expect("clean stop");
    assert_eq!(
        recorder.records()[0].payload.as_deref(),
        Some(&b"poison"[..])
    );
}

#[tokio::test]
async fn records_refused_for_their_content_are_set_aside_and_the_rest_applied_in_order() {
    let fixture = fixture("refused", 1).await;
    let topic = fixture.topics.customers.clone();
    let group = group_name("refused");
    let payloads: Vec<Vec<u8>> = (0..30)
        .map(|index| {
            if index == 7 || index == 22 {
                b"poison".to_vec()
            } else {
                format!("event-{index}").into_bytes()
            }
        })
        .collect();
    for payload in &payloads {
        fixture
            .producer
            .send(&record(&topic, "cus_1", payload, &[]))
            .await
            .expect("produce");
    }
    let recorder = Recorder {
        refuse: Some(b"poison".to_vec()),
        ..Recorder::default()
    };
    let consumer = start_consumer(&fixture, &group, &[&topic], recorder.clone());
    wait_for(Duration::from_secs(30), "every record handled", || {
        let recorder = recorder.clone();
        async move {
            (recorder.records().len() + recorder.dead_lettered.lock().unwrap().len() == 30)
                .then_some(())
        }
    })
    .await;
    consumer
        .stop()
        .await
        .expect("the runner never stopped on the poison");
    let applied: Vec<Vec<u8>> = recorder
        .records()
        .iter()
        .filter_map(|record| record.payload.clone())
        .collect();
    let expected: Vec<Vec<u8>> = payloads
        .iter()
        .filter(|payload| payload.as_slice() != b"poison")
        .cloned()
        .collect();
    assert_eq!(applied, expected, "everything else applied, in order");
    let dead: Vec<(i64, String)> = recorder
        .dead_lettered
        .lock()
        .unwrap()
        .iter()
        .map(|(record, detail)| (record.offset, detail.clone()))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!((dead[0].0, dead[1].0), (7, 22));
    assert!(
        dead[0].1.contains("0x00"),
        "the database's reason: {dead:?}"
    );
    assert_eq!(
        committed_offsets(&fixture.settings, &group, &topic, 1),
        vec![30],
        "everything committed"
    );
}

#[tokio::test]
async fn shutdown_while_retrying_leaves_the_batch_uncommitted_for_redelivery() {
    let fixture = fixture("abandon", 1).await;
    let topic = fixture.topics.customers.clone();
    let group = group_name("abandon");
    fixture
        .producer
        .send(&record(&topic, "cus_1", b"kept", &[]))
        .await
        .expect("produce");
    let recorder = Recorder::default();
    *recorder.transient_failures_left.lock().unwrap() = u32::MAX;
    let consumer = start_consumer(&fixture, &group, &[&topic], recorder.clone());
    wait_for(Duration::from_secs(30), "the first failed attempt", || {
        let recorder = recorder.clone();
        async move { (*recorder.transient_failures_left.lock().unwrap() < u32::MAX).then_some(()) }
    })
    .await;
    let started = std::time::Instant::now();
    consumer.stop().await.expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    assert!(recorder.records().is_empty());
    assert_eq!(
        committed_offsets(&fixture.settings, &group, &topic, 1),
        vec![-1]
    );
}

#[tokio::test]
async fn an_idle_consumer_stops_promptly() {
    let fixture = fixture("idle", 1).await;
    let group = group_name("idle");
    let consumer = start_consumer(
        &fixture,
        &group,
        &[&fixture.topics.tasks],
        Recorder::default(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    consumer.stop().await.expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn lanes_handle_their_partitions_at_once_in_order_and_all_are_committed() {
    let partitions = 4;
    let fixture = fixture("lanes", partitions).await;
    let topic = fixture.topics.customers.clone();
    let group = group_name("lanes");
    let keys = 24;
    let per_key = 10;
    for round in 0..per_key {
        for key in 0..keys {
            fixture
                .producer
                .send(&record(
                    &topic,
                    &format!("cus_{key}"),
                    format!("cus_{key} {round:02}").as_bytes(),
                    &[],
                ))
                .await
                .expect("produce");
        }
    }
    let shared = Recorder {
        hold: Some(Duration::from_millis(50)),
        ..Recorder::default()
    };
    // One record list a lane; the in-flight counters are shared, to see the lanes overlap.
    let lanes: Vec<Recorder> = (0..2)
        .map(|_| Recorder {
            seen: Default::default(),
            ..shared.clone()
        })
        .collect();
    let consumer = start_lanes(&fixture, &group, &[&topic], lanes.clone());
    let total = keys * per_key;
    wait_for(Duration::from_secs(60), "every record handled", || {
        let lanes = lanes.clone();
        async move {
            (lanes.iter().map(|lane| lane.records().len()).sum::<usize>() >= total).then_some(())
        }
    })
    .await;
    consumer.stop().await.expect("clean stop");

    let mut every = Vec::new();
    for (index, lane) in lanes.iter().enumerate() {
        let records = lane.records();
        assert!(!records.is_empty(), "lane {index} had work");
        every.extend(records);
    }
    assert_eq!(every.len(), total, "each record handled once");
    // In the order their batches ended, whichever lane handled them: a partition's batches
    // follow each other, in one lane or another.
    let handled = shared.all_handled.lock().unwrap().clone();
    for key in 0..keys {
        let prefix = format!("cus_{key} ");
        let rounds: Vec<String> = handled
            .iter()
            .filter_map(|record| String::from_utf8(record.payload.clone().unwrap_or_default()).ok())
            .filter(|payload| payload.starts_with(&prefix))
            .collect();
        let mut sorted = rounds.clone();
        sorted.sort();
        assert_eq!(rounds, sorted, "cus_{key}'s records in their order");
        assert_eq!(rounds.len(), per_key);
    }
    assert_eq!(
        shared
            .most_in_flight
            .load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the two lanes handled batches at the same time"
    );
    let committed: i64 = committed_offsets(&fixture.settings, &group, &topic, partitions)
        .into_iter()
        .sum();
    assert_eq!(
        committed,
        i64::try_from(total).unwrap(),
        "every lane's offsets committed"
    );
}

/// A fetch brings a partition's records in a run: a round that stopped at the first full lane
/// left the other lane idle while its records waited in the queue.
#[tokio::test]
async fn both_lanes_get_full_batches_when_records_wait_for_both() {
    let partitions = 2;
    let fixture = fixture("even-lanes", partitions).await;
    let topic = fixture.topics.customers.clone();
    let group = group_name("even-lanes");
    let keys = 8;
    let per_key = 50;
    // Key after key: each partition's records form long runs, as a backlog does.
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
    let shared = Recorder {
        hold: Some(Duration::from_millis(20)),
        ..Recorder::default()
    };
    let lanes: Vec<Recorder> = (0..2)
        .map(|_| Recorder {
            seen: Default::default(),
            ..shared.clone()
        })
        .collect();
    let batch = 50;
    let consumer = start_lanes_with(
        &fixture,
        &group,
        &[&topic],
        lanes.clone(),
        RunnerOptions {
            batch_max_messages: batch,
            // Long enough for every fetch to arrive: the rounds are shaped by the runner only.
            batch_max_wait: Duration::from_secs(1),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
        },
    );
    let total = keys * per_key;
    wait_for(Duration::from_secs(60), "every record handled", || {
        let lanes = lanes.clone();
        async move {
            (lanes.iter().map(|lane| lane.records().len()).sum::<usize>() >= total).then_some(())
        }
    })
    .await;
    consumer.stop().await.expect("clean stop");

    let per_lane: Vec<usize> = lanes.iter().map(|lane| lane.records().len()).collect();
    assert!(
        per_lane.iter().all(|&count| count > 0),
        "both lanes had records: {per_lane:?}"
    );
    let sizes = shared.batch_sizes.lock().unwrap().clone();
    let full = sizes.iter().filter(|&&size| size == batch).count();
    // Every batch full but at most one a lane (each lane's last), and the lanes at work
    // together in every round where both had records.
    assert!(
        full + 2 >= sizes.len(),
        "batches not full while records waited: {sizes:?}"
    );
    let rounds_with_both = per_lane.iter().min().unwrap() / batch;
    let overlapping = shared.overlapping.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        overlapping + 1 >= rounds_with_both,
        "the lanes worked together in {overlapping} rounds of the {rounds_with_both} where both had a full batch waiting (batches {sizes:?})"
    );
}

/// Lanes take the partitions that have records, round by round: records only on partitions of
/// one parity (a fetch's run of one partition does the same for a while) once kept the other
/// lane idle, since partitions were dealt to lanes by their number.
#[tokio::test]
async fn lanes_share_the_partitions_that_have_records_and_keep_each_key_in_order() {
    let partitions = 4;
    let fixture = fixture("shared-lanes", partitions).await;
    // Which partition each key goes to, learnt on another topic of as many partitions (the
    // producer's partitioner depends only on the key and the partition count).
    let probe = fixture.topics.invoices.clone();
    let candidates: Vec<String> = (0..32).map(|key| format!("cus_{key}")).collect();
    for key in &candidates {
        fixture
            .producer
            .send(&record(&probe, key, key.as_bytes(), &[]))
            .await
            .expect("produce");
    }
    let prober = Recorder::default();
    let probing = start_consumer(
        &fixture,
        &group_name("shared-lanes-probe"),
        &[&probe],
        prober.clone(),
    );
    wait_for(Duration::from_secs(60), "every probe handled", || {
        let prober = prober.clone();
        let expected = candidates.len();
        async move { (prober.records().len() >= expected).then_some(()) }
    })
    .await;
    probing.stop().await.expect("clean stop");
    let odd: Vec<String> = prober
        .records()
        .into_iter()
        .filter(|record| record.partition % 2 == 1)
        .filter_map(|record| String::from_utf8(record.payload.unwrap_or_default()).ok())
        .collect();
    let on_one = prober
        .records()
        .iter()
        .filter(|record| record.partition == 1)
        .count();
    let on_three = prober
        .records()
        .iter()
        .filter(|record| record.partition == 3)
        .count();
    assert!(
        on_one > 0 && on_three > 0,
        "keys on partitions 1 and 3 among {candidates:?}"
    );

    let topic = fixture.topics.customers.clone();
    let per_key = 40;
    for index in 0..per_key {
        for key in &odd {
            fixture
                .producer
                .send(&record(
                    &topic,
                    key,
                    format!("{key} {index:02}").as_bytes(),
                    &[],
                ))
                .await
                .expect("produce");
        }
    }
    let shared = Recorder {
        hold: Some(Duration::from_millis(20)),
        ..Recorder::default()
    };
    let lanes: Vec<Recorder> = (0..2)
        .map(|_| Recorder {
            seen: Default::default(),
            ..shared.clone()
        })
        .collect();
    let consumer = start_lanes_with(
        &fixture,
        &group_name("shared-lanes"),
        &[&topic],
        lanes.clone(),
        RunnerOptions {
            batch_max_messages: 20,
            batch_max_wait: Duration::from_millis(200),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
        },
    );
    let total = odd.len() * per_key;
    wait_for(Duration::from_secs(60), "every record handled", || {
        let lanes = lanes.clone();
        async move {
            (lanes.iter().map(|lane| lane.records().len()).sum::<usize>() >= total).then_some(())
        }
    })
    .await;
    consumer.stop().await.expect("clean stop");

    let per_lane: Vec<usize> = lanes.iter().map(|lane| lane.records().len()).collect();
    assert!(
        per_lane.iter().all(|&count| count > 0),
        "both lanes had records though every record is on an odd partition: {per_lane:?}"
    );
    assert!(
        shared.overlapping.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the lanes worked at the same time"
    );
    let handled: Vec<String> = shared
        .all_handled
        .lock()
        .unwrap()
        .iter()
        .filter_map(|record| String::from_utf8(record.payload.clone().unwrap_or_default()).ok())
        .collect();
    assert_eq!(handled.len(), total, "each record handled once");
    for key in &odd {
        let prefix = format!("{key} ");
        // In the order their batches ended: a partition's batches follow each other.
        let mut seen: Vec<&String> = handled
            .iter()
            .filter(|payload| payload.starts_with(&prefix))
            .collect();
        let in_order = seen.windows(2).all(|pair| pair[0] < pair[1]);
        seen.sort();
        assert!(in_order, "{key}'s records in their order: {seen:?}");
        assert_eq!(seen.len(), per_key);
    }
}

/// relance keeps little prefetched (`kafka.consumer_prefetch_*`), and librdkafka postpones a
/// partition's next fetch by `fetch.queue.backoff.ms` (a second by default) whenever its queue
/// has reached those limits: under a backlog the ingestor's batches stalled for up to a second
/// between fetches (1.2-1.6 s in 100,000 events of `make bench`). Here: 1,000 records of 1 KB
/// in fetches of 4 KB, handled 20 at a time in 20 ms (one second of work), took 11 s with the
/// default backoff and 1.8 s with relance's (`kafka.consumer_fetch_backoff_ms`, 100 ms).
#[tokio::test]
async fn a_backlog_is_read_without_pausing_between_fetches() {
    let fixture = fixture("fetch-backoff", 1).await;
    let topic = fixture.topics.customers.clone();
    let total = 1000;
    let padding = "x".repeat(1000);
    for index in 0..total {
        fixture
            .producer
            .send(&record(
                &topic,
                "cus_1",
                format!("{index:04} {padding}").as_bytes(),
                &[],
            ))
            .await
            .expect("produce");
    }
    let mut kafka = fixture.settings.kafka.clone();
    // A few records a fetch (tansu heeds the request's fetch.max.bytes), and a queue that is
    // full after one: the backlog takes many fetches, each after the queue was full.
    kafka.consumer_prefetch_messages = 10;
    kafka.consumer_prefetch_kbytes = 1;
    for (property, value) in [
        ("fetch.max.bytes", "4096"),
        ("max.partition.fetch.bytes", "4096"),
        ("message.max.bytes", "4096"),
    ] {
        kafka.librdkafka.insert(property.into(), value.into());
    }
    let handler = Recorder {
        hold: Some(Duration::from_millis(20)),
        ..Recorder::default()
    };
    let consumer = start_with_settings(
        &kafka,
        &group_name("fetch-backoff"),
        &[&topic],
        vec![handler.clone()],
        RunnerOptions {
            batch_max_messages: 20,
            batch_max_wait: Duration::from_millis(20),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
        },
    );
    // Timed from the first record handled: the group join is the broker's business.
    wait_for(Duration::from_secs(60), "a first record handled", || {
        let handler = handler.clone();
        async move { (!handler.records().is_empty()).then_some(()) }
    })
    .await;
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(120), "every record handled", || {
        let handler = handler.clone();
        async move { (handler.records().len() >= total).then_some(()) }
    })
    .await;
    let took = started.elapsed();
    consumer.stop().await.expect("clean stop");
    let batches = handler.batch_sizes.lock().unwrap().len();
    assert!(
        took < Duration::from_secs(6),
        "{total} records took {took:?} in {batches} batches: the consumer waited between fetches"
    );
}

/// Lanes waited for each other: every lane's batch of a round was handled before any lane took
/// the next, so a slow batch (a customer with thousands of invoices, a lock wait) left the other
/// lanes idle with records held back (1-1.7 s of 100,000 events in `make bench`). A lane that
/// finishes now takes the next full batch of the partitions no lane has in hand.
#[tokio::test]
async fn a_slow_batch_does_not_hold_the_other_lanes_back() {
    // Few records a partition, and room to hold them all back: the records beside a slow
    // batch are there whatever order the fetches bring the partitions in.
    let partitions = 8;
    let fixture = fixture("slow-lane", partitions).await;
    let topic = fixture.topics.customers.clone();
    let keys = 24;
    let per_key = 4;
    for index in 0..per_key {
        for key in 0..keys {
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
    let shared = Recorder {
        hold: Some(Duration::from_millis(10)),
        slow_first: Some(Duration::from_millis(600)),
        ..Recorder::default()
    };
    let lanes: Vec<Recorder> = (0..2)
        .map(|_| Recorder {
            seen: Default::default(),
            ..shared.clone()
        })
        .collect();
    let consumer = start_lanes_with(
        &fixture,
        &group_name("slow-lane"),
        &[&topic],
        lanes.clone(),
        RunnerOptions {
            // Four batches a lane held back: all 96 records.
            batch_max_messages: 12,
            batch_max_wait: Duration::from_millis(200),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
        },
    );
    let total = keys * per_key;
    wait_for(Duration::from_secs(60), "every record handled", || {
        let lanes = lanes.clone();
        async move {
            (lanes.iter().map(|lane| lane.records().len()).sum::<usize>() >= total).then_some(())
        }
    })
    .await;
    consumer.stop().await.expect("clean stop");

    let while_slow = shared.begun_while_slow.lock().unwrap().clone();
    assert_eq!(while_slow.len(), 1, "the first batch was slow");
    // Lanes in step begin one batch beside a slow one; the records held back make several.
    assert!(
        while_slow[0] >= 3,
        "{} batches begun beside the slow batch",
        while_slow[0]
    );
    // Still once each, and each key in order.
    let handled = shared.all_handled.lock().unwrap().clone();
    assert_eq!(handled.len(), total, "every record handled once");
    for key in 0..keys {
        let prefix = format!("cus_{key} ");
        let order: Vec<Vec<u8>> = handled
            .iter()
            .filter_map(|record| record.payload.clone())
            .filter(|payload| payload.starts_with(prefix.as_bytes()))
            .collect();
        assert!(
            order.windows(2).all(|pair| pair[0] < pair[1]),
            "cus_{key} out of order"
        );
    }
}

/// A lane that fails for good stops the runner even while another lane waits to retry (a
/// database that is down): the waiting lane gives its batch up, uncommitted, instead of
/// holding the error back until the database returns.
#[tokio::test]
async fn a_lane_that_fails_for_good_stops_the_runner_while_another_waits_to_retry() {
    let partitions = 2;
    let fixture = fixture("fatal-lanes", partitions).await;
    let topic = fixture.topics.customers.clone();
    let group = group_name("fatal-lanes");
    for key in 0..8 {
        for index in 0..5 {
            fixture
                .producer
                .send(&record(
                    &topic,
                    &format!("cus_{key}"),
                    format!("cus_{key} {index}").as_bytes(),
                    &[],
                ))
                .await
                .expect("produce");
        }
    }
    let fatal = Recorder::default();
    *fatal.fatal.lock().unwrap() = true;
    let waiting = Recorder::default();
    *waiting.transient_failures_left.lock().unwrap() = u32::MAX;
    let consumer = start_lanes_with(
        &fixture,
        &group,
        &[&topic],
        vec![fatal, waiting.clone()],
        RunnerOptions {
            batch_max_messages: 10,
            batch_max_wait: Duration::from_millis(200),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
        },
    );
    let result = tokio::time::timeout(Duration::from_secs(30), consumer.task)
        .await
        .expect("the runner stops by itself")
        .expect("task");
    assert!(
        matches!(result, Err(relance_kafka::ConsumerError::Handler(_))),
        "{result:?}"
    );
    assert!(
        *waiting.transient_failures_left.lock().unwrap() < u32::MAX,
        "the second lane had a batch and was waiting to retry it"
    );
    assert!(waiting.records().is_empty(), "nothing was handled");
    assert_eq!(
        committed_offsets(&fixture.settings, &group, &topic, partitions),
        vec![-1, -1],
        "nothing committed"
    );
}
