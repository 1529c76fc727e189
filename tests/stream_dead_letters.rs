//! A record the producer refuses for good (larger than `message.max.bytes`) goes to the
//! dead-letter topic with the reason in its headers, and the stream goes on: the real bridge
//! against the real broker (tansu), on loopback.

mod common;

use std::time::{Duration, Instant};

use common::services::{reader, start_bridge_logging, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};

const SOURCE: &str = "cars";

/// Reads `topic` from its start in a group of its own until `n` records have come (or 120 s).
fn read(brokers: &str, topic: &str, n: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer = reader(brokers, &format!("reader-{topic}"), topic);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut messages = Vec::new();
    while messages.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = rdkafka::consumer::BaseConsumer::poll(&consumer, Duration::from_millis(500)) {
            messages.push(m.detach());
        }
    }
    messages
}

fn header(message: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn a_record_too_large_to_produce_is_dead_lettered_and_the_stream_goes_on() {
    let out = common::repo().join("target/stream-dead-letters");
    std::fs::create_dir_all(&out).unwrap();
    let broker = Broker::start(&out);
    for topic in [SOURCE, "priced", "priced.dlq"] {
        broker.create_topic(topic, 1);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    // Three flattened rows without a schema; the second carries a column of 20 kB, which the
    // bridge's producer (message.max.bytes=10000 below) cannot produce.
    for id in 1..=3 {
        let notes = if id == 2 { "x".repeat(20_000) } else { String::new() };
        let row = serde_json::json!({"id": id, "model": "Fiesta", "year": 2017, "transmission": "Manual",
            "mileage": 15944, "fuel_type": "Petrol", "tax": 150, "mpg": 57.7, "engine_size": 1.0,
            "notes": notes, "suggested_price": null});
        let key = format!("{{\"id\": {id}}}");
        let value = row.to_string();
        runtime
            .block_on(producer.send(
                FutureRecord::to(SOURCE).key(&key).payload(&value),
                Duration::from_secs(10),
            ))
            .unwrap();
    }
    let mut bridge = start_bridge_logging(
        "bridge",
        &broker,
        &[
            "--source-topics",
            SOURCE,
            "--sink-topic",
            "priced",
            "--dead-letter-topic",
            "priced.dlq",
            "--producer-option",
            "message.max.bytes=10000",
            "--log-format",
            "json",
        ],
        &out,
        "info,rdkafka=warn",
    );

    let priced = read(&broker.brokers(), "priced", 2);
    let ids: Vec<i64> = priced
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(m.payload().unwrap()).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        ids,
        [1, 3],
        "the rows around the unproducible one flow on:\n{}",
        bridge.tail()
    );
    let dead = read(&broker.brokers(), "priced.dlq", 1);
    assert_eq!(dead.len(), 1, "no dead letter:\n{}", bridge.tail());
    let letter = &dead[0];
    assert_eq!(letter.key(), Some(&b"{\"id\": 2}"[..]));
    assert_eq!(header(letter, "xgserve.error.type").as_deref(), Some("unproducible"));
    assert_eq!(header(letter, "xgserve.source.offset").as_deref(), Some("1"));
    assert!(header(letter, "xgserve.error").unwrap().contains("cannot be produced"));
    // The message itself is too large for the dead-letter topic too: it goes without its value,
    // which stays in the source topic at the offset the headers name.
    assert!(letter.payload().is_none());
    assert!(header(letter, "xgserve.value.omitted").is_some());
    bridge.assert_running();
}
