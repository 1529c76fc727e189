//! A record the producer or the broker refuses for good (larger than `message.max.bytes`; invalid,
//! said at delivery), or a row the Postgres sink refuses, goes to the dead-letter topic with the reason in its headers, and the stream goes
//! on: the real bridge against the real broker (tansu) and PostgreSQL, on loopback.

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

/// Produces flattened rows without a schema, keyed by id, to `topic`.
fn produce(brokers: &str, topic: &str, rows: &[serde_json::Value]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for row in rows {
        let key = format!("{{\"id\": {}}}", row["id"]);
        let value = row.to_string();
        runtime
            .block_on(producer.send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(10),
            ))
            .unwrap();
    }
}

fn car(id: i64, mileage: i64) -> serde_json::Value {
    serde_json::json!({"id": id, "model": "Fiesta", "year": 2017, "transmission": "Manual",
        "mileage": mileage, "fuel_type": "Petrol", "tax": 150, "mpg": 57.7, "engine_size": 1.0,
        "suggested_price": null})
}

#[test]
fn a_row_the_postgres_sink_refuses_is_dead_lettered_and_the_others_land() {
    let out = common::repo().join("target/stream-sink-refused");
    std::fs::create_dir_all(&out).unwrap();
    let broker = Broker::start(&out);
    for topic in ["cars2", "priced2", "priced2.dlq"] {
        broker.create_topic(topic, 1);
    }
    let postgres = common::services::Postgres::start(&out);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(postgres.connect());
    // The operator's table refuses mileages of 100,000 and more.
    runtime
        .block_on(db.batch_execute(
            "CREATE TABLE priced2 (id BIGINT PRIMARY KEY, model TEXT, year INTEGER, transmission TEXT, \
             mileage INTEGER CHECK (mileage < 100000), fuel_type TEXT, tax INTEGER, mpg REAL, \
             engine_size REAL, suggested_price INTEGER)",
        ))
        .unwrap();
    produce(
        &broker.brokers(),
        "cars2",
        &[car(1, 15944), car(2, 150_000), car(3, 20000)],
    );
    let pg = postgres.url("car_database");
    // --pg-sink and --pg-table through the environment, as a deployment's Secret would give them.
    let mut bridge = common::process::Process::spawn(
        "bridge-pg",
        std::process::Command::new(env!("CARGO_BIN_EXE_xgserve"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "stream",
                "--brokers",
                &broker.brokers(),
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                "0",
            ])
            .args([
                "--source-topics",
                "cars2",
                "--sink-topic",
                "priced2",
                "--dead-letter-topic",
                "priced2.dlq",
            ])
            .env("XGSERVE_PG_SINK", &pg)
            .env("XGSERVE_PG_TABLE", "priced2"),
        &out,
    );
    let dead = read(&broker.brokers(), "priced2.dlq", 1);
    assert_eq!(dead.len(), 1, "no dead letter:\n{}", bridge.tail());
    assert_eq!(dead[0].key(), Some(&b"{\"id\": 2}"[..]));
    assert_eq!(header(&dead[0], "xgserve.error.type").as_deref(), Some("sink_refused"));
    assert!(header(&dead[0], "xgserve.error").unwrap().contains("23514"));
    let priced = read(&broker.brokers(), "priced2", 2);
    assert_eq!(priced.len(), 2, "{}", bridge.tail());
    let ids: Vec<i64> = runtime
        .block_on(db.query("SELECT id FROM priced2 ORDER BY id", &[]))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1, 3]);
    bridge.assert_running();
}

#[test]
fn a_record_too_large_to_produce_is_dead_lettered_and_the_stream_goes_on() {
    let out = common::repo().join("target/stream-dead-letters");
    std::fs::create_dir_all(&out).unwrap();
    let broker = Broker::start(&out);
    for topic in [SOURCE, "priced", "priced.dlq"] {
        broker.create_topic(topic, 1);
    }
    // Three flattened rows without a schema; the second carries a column of 20 kB, which the
    // bridge's producer (message.max.bytes=10000 below) cannot produce.
    let mut rows = vec![car(1, 15944), car(2, 15944), car(3, 15944)];
    rows[1]["notes"] = serde_json::json!("x".repeat(20_000));
    produce(&broker.brokers(), SOURCE, &rows);
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

/// The broker here is librdkafka's own mock cluster, in this process, on loopback: it refuses a
/// produce request on demand. tansu 0.6.0 cannot refuse a record and go on serving an idempotent
/// producer (a topic schema makes it refuse, and then its SQLite engine panics, "more or less than
/// one row", and its memory engine fences the producer after librdkafka's epoch bump).
#[test]
fn a_record_the_broker_refuses_at_delivery_is_dead_lettered_and_the_stream_goes_on() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let out = common::repo().join("target/stream-broker-refused");
    std::fs::create_dir_all(&out).unwrap();
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["cars4", "priced4", "priced4.dlq"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let mut bridge = common::services::start_bridge_at(
        "bridge-refused",
        &brokers,
        &[
            "--source-topics",
            "cars4",
            "--sink-topic",
            "priced4",
            "--dead-letter-topic",
            "priced4.dlq",
        ],
        &out,
        "info,rdkafka=warn",
    );
    let id = |m: &rdkafka::message::OwnedMessage| {
        serde_json::from_slice::<serde_json::Value>(m.payload().unwrap()).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    produce(&brokers, "cars4", &[car(1, 15944)]);
    assert_eq!(read(&brokers, "priced4", 1).len(), 1, "{}", bridge.tail());
    // The next produce request (this test's, of row 2) goes through; the one after (the bridge's
    // priced row 2) is refused as an invalid record.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD,
        ],
    );
    produce(&brokers, "cars4", &[car(2, 20000)]);
    let dead = read(&brokers, "priced4.dlq", 1);
    assert_eq!(dead.len(), 1, "no dead letter:\n{}", bridge.tail());
    let letter = &dead[0];
    assert_eq!(letter.key(), Some(&b"{\"id\": 2}"[..]));
    assert_eq!(header(letter, "xgserve.error.type").as_deref(), Some("unproducible"));
    assert_eq!(header(letter, "xgserve.source.offset").as_deref(), Some("1"));
    let error = header(letter, "xgserve.error").unwrap();
    assert!(error.contains("broker refused"), "{error}");
    // The dead letter carries the record that was refused: the row, priced.
    let refused: serde_json::Value = serde_json::from_slice(letter.payload().unwrap()).unwrap();
    assert_eq!(refused["id"], 2);
    assert!(refused["suggested_price"].is_i64(), "{refused}");
    produce(&brokers, "cars4", &[car(3, 20000)]);
    let priced = read(&brokers, "priced4", 2);
    assert_eq!(priced.iter().map(id).collect::<Vec<_>>(), [1, 3], "{}", bridge.tail());
    bridge.assert_running();
}
