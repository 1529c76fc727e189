//! The bridge's throughput and latency, with real parts on loopback (tansu, PostgreSQL, Debezium):
//!
//! 0. **The broker alone**: a plain producer writes the events; a plain consumer reads them; a
//!    pass-through pipe (consumer and producer with the bridge's settings, records forwarded as they
//!    are: no decoding, no pricing) copies them to another topic. The pipe is the broker's ceiling
//!    for any Kafka → Kafka job on this machine.
//! 1. **Batched, in process**: `xgserve stream` drains a backlog of Debezium events, Kafka → price →
//!    Kafka; events/s from the produced records' timestamps, as a share of the pipe's, plus the CPU
//!    the bridge and the broker used meanwhile.
//! 2. **The seed's design**: the same events, one at a time, each POSTed to `/predict` over HTTP and
//!    flushed (acknowledged) before the next (`--predict-url ... --max-batch 1 --batches-in-flight 1`).
//! 3. **Insert to sink**: rows inserted into Postgres at a steady rate, through Debezium, the bridge
//!    and its Postgres sink; latency from each insert's commit to its upsert, p50/p99.
//!
//! Run: `cargo bench --bench stream --features stream` (needs what `tests/run` installs).
//! `XGSERVE_BENCH_EVENTS` (default 100000: the bridge drains 20,000 in about 0.2 s, too short to time well) and `XGSERVE_BENCH_LOOP_EVENTS` (default 1000) set the sizes.

#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/common/seed_events.rs"]
mod seed_events;
#[path = "../tests/common/services.rs"]
mod services;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use process::{start_server, wait_until, Process};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;
use services::{start_bridge, start_debezium, Broker, Postgres, SOURCE_TOPIC};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn data() -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("XGSERVE_DATA").map_or_else(|| repo.join("../shared/data/ford.csv"), Into::into)
}

/// The seed table's rows as Debezium writes them (flattened, JSON with schemas), ford.csv cycled.
fn events(n: usize) -> Vec<(String, String)> {
    let (schema, key_schema) = (seed_events::value_schema(), seed_events::key_schema());
    let rows = services::ford_rows(&data(), 17_965);
    (0..n)
        .map(|i| {
            let r = &rows[i % rows.len()];
            let n = |k: usize| r[k].parse::<f64>().unwrap();
            let id = i + 1;
            let payload = json!({"id": id, "model": &r[0], "year": n(1) as i64, "price": n(2) as i64,
                "transmission": &r[3], "mileage": n(4) as i64, "fuel_type": &r[5], "tax": n(6) as i64,
                "mpg": n(7), "engine_size": n(8), "suggested_price": null});
            let key = seed_events::message(&key_schema, &json!({"id": id}));
            (key, seed_events::message(&schema, &payload))
        })
        .collect()
}

/// What reading `n` records of a topic saw.
struct Reading {
    /// When the first record arrived.
    first_arrival: Instant,
    /// The earliest and latest record timestamps, in milliseconds.
    first: i64,
    last: i64,
}

/// Consumer settings for both the plain consumer and the bridge, from `XGSERVE_BENCH_CONSUMER`
/// (`key=value,key=value`), so the broker's ceiling and the bridge are measured alike. By default
/// fetches wait at most 10 ms: tansu 0.6 answers a fetch only when its wait is over, data or not.
fn consumer_options() -> Vec<(String, String)> {
    std::env::var("XGSERVE_BENCH_CONSUMER")
        .unwrap_or_else(|_| "fetch.wait.max.ms=10".to_owned())
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Reads `n` records of a topic in a consumer group of its own.
fn read(brokers: &str, group: &str, topic: &str, n: usize, within: Duration) -> Reading {
    let consumer = services::reader_with(brokers, group, topic, &consumer_options());
    let (mut first, mut last, mut first_arrival, mut seen) = (i64::MAX, i64::MIN, None, 0);
    let deadline = Instant::now() + within;
    while seen < n {
        assert!(Instant::now() < deadline, "only {seen} of {n} records reached {topic}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            first_arrival.get_or_insert_with(Instant::now);
            let t = m.timestamp().to_millis().unwrap();
            first = first.min(t);
            last = last.max(t);
            seen += 1;
        }
    }
    Reading {
        first_arrival: first_arrival.unwrap_or_else(Instant::now),
        first,
        last,
    }
}

/// The bridge's producer settings (src/stream/kafka.rs), for the benchmark's own producers.
/// (tansu 0.6 stalled with librdkafka's 1 MB batches and unbounded requests in flight; an idempotent
/// producer keeps at most 5 in flight.)
fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1");
    config
}

/// Forwards `n` records of `from` to `to` as they are, with the bridge's consumer and producer
/// settings; offsets are not committed.
fn pipe(brokers: &str, from: &str, to: &str, n: usize, within: Duration) {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord};
    let consumer = services::reader_with(brokers, "bench-pipe", from, &consumer_options());
    let producer: BaseProducer = producer_config(brokers).create().unwrap();
    producer
        .client()
        .fetch_metadata(Some(to), Duration::from_secs(10))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut forwarded = 0;
    while forwarded < n {
        assert!(
            Instant::now() < deadline,
            "the pipe forwarded only {forwarded} of {n} records"
        );
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let mut record = BaseRecord::to(to)
            .key(message.key().unwrap_or_default())
            .payload(message.payload().unwrap_or_default());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((error, _)) => panic!("the pipe cannot produce: {error}"),
            }
        }
        producer.poll(Duration::ZERO);
        forwarded += 1;
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// A `/proc/.../stat` line's command name and CPU seconds (user + system).
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    Some((name, (ticks(11) + ticks(12)) / 100.0))
}

/// CPU seconds a process has used (user + system).
fn cpu_seconds(process: &Process) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.child.id())).unwrap_or_default();
    stat_cpu(&stat).map_or(0.0, |(_, seconds)| seconds)
}

/// CPU seconds each thread of a process has used, busiest first, by thread name.
fn thread_cpu_seconds(process: &Process) -> Vec<(String, f64)> {
    let tasks = format!("/proc/{}/task", process.child.id());
    let mut threads: Vec<(String, f64)> = std::fs::read_dir(tasks)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| stat_cpu(&std::fs::read_to_string(task.path().join("stat")).ok()?))
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `cargo bench -- --list` probe bench binaries
    }
    let events_n = env_usize("XGSERVE_BENCH_EVENTS", 100_000);
    let loop_n = env_usize("XGSERVE_BENCH_LOOP_EVENTS", 1_000).min(events_n);
    let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/stream-bench");
    std::fs::create_dir_all(&logs).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let mut broker = Broker::start(&logs);
    let brokers = broker.brokers();
    for (topic, partitions) in [
        (SOURCE_TOPIC, 2),
        ("piped", 2),
        ("priced_batched", 2),
        ("priced_loop", 2),
        ("dlq", 1),
    ] {
        broker.create_topic(topic, partitions);
    }
    println!("producing {events_n} Debezium events to {SOURCE_TOPIC} ...");
    // The bridge's own producer settings, so the write rate is the broker's ceiling for its output.
    let producer: FutureProducer = producer_config(&brokers).create().unwrap();
    let events = events(events_n);
    // As the bridge does, learn where the topic lives before timing the writes.
    producer
        .client()
        .fetch_metadata(Some(SOURCE_TOPIC), Duration::from_secs(10))
        .unwrap();
    let seeding = Instant::now();
    runtime.block_on(async {
        for chunk in events.chunks(1_000) {
            // Enqueued at once (`send` would wait for each delivery before the next), then awaited.
            let deliveries: Vec<_> = chunk
                .iter()
                .map(|(k, v)| {
                    producer
                        .send_result(FutureRecord::to(SOURCE_TOPIC).key(k).payload(v))
                        .map_err(|(e, _)| e)
                        .unwrap()
                })
                .collect();
            for delivery in deliveries {
                delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
            eprint!(".");
        }
        eprintln!();
    });
    let written = events_n as f64 / seeding.elapsed().as_secs_f64();
    println!(
        "broker alone: a plain producer with the bridge's settings writes the events at {written:.0} events/s \
         (1,000 in flight at a time)"
    );
    // The broker's own ceiling for reading the backlog: a plain consumer, nothing else.
    let reading = read(
        &brokers,
        "bench-drain",
        SOURCE_TOPIC,
        events_n,
        Duration::from_secs(300),
    );
    let consumed = (events_n - 1) as f64 / reading.first_arrival.elapsed().as_secs_f64();
    println!("broker alone: a plain consumer reads the backlog at {consumed:.0} events/s (from its first record)");
    // The broker's ceiling for a Kafka → Kafka job: the same backlog forwarded unchanged.
    let piping = std::thread::spawn({
        let brokers = brokers.clone();
        move || pipe(&brokers, SOURCE_TOPIC, "piped", events_n, Duration::from_secs(600))
    });
    let Reading { first, last, .. } = read(&brokers, "bench-reader", "piped", events_n, Duration::from_secs(600));
    piping.join().unwrap();
    let piped = (events_n - 1) as f64 / ((last - first).max(1) as f64 / 1000.0);
    println!(
        "broker alone: a pass-through pipe (the bridge's consumer and producer settings, records forwarded \
         unchanged) copies the backlog at {piped:.0} events/s"
    );

    // 1. Batched, in process.
    let tansu_before = cpu_seconds(&broker.process);
    let started = Instant::now();
    let mut args = vec![
        "--group-id".to_owned(),
        "bench-batched".to_owned(),
        "--sink-topic".to_owned(),
        "priced_batched".to_owned(),
        "--dead-letter-topic".to_owned(),
        "dlq".to_owned(),
    ];
    for (key, value) in consumer_options() {
        args.extend(["--consumer-option".to_owned(), format!("{key}={value}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut bridge = start_bridge("bench-batched", &broker, &args, &logs);
    let Reading { first, last, .. } = read(
        &brokers,
        "bench-reader",
        "priced_batched",
        events_n,
        Duration::from_secs(600),
    );
    let wall = started.elapsed();
    let (bridge_cpu, tansu_cpu) = (cpu_seconds(&bridge), cpu_seconds(&broker.process) - tansu_before);
    let threads = thread_cpu_seconds(&bridge);
    bridge.assert_running();
    drop(bridge);
    let span = (last - first).max(1) as f64 / 1000.0;
    let batched = (events_n - 1) as f64 / span;
    println!(
        "batched, in process: {events_n} events in {span:.2} s = {batched:.0} events/s, {:.0}% of the pass-through \
         pipe (start to last record {:.1} s, including the group join); CPU meanwhile: bridge {bridge_cpu:.2} s, \
         broker {tansu_cpu:.2} s",
        100.0 * batched / piped,
        wall.as_secs_f64()
    );
    // A bridge whose busiest thread is busy for well under the whole drain waits on the broker, not
    // on its own work. Each thread's CPU counts from the bridge's start, so this overstates it a little.
    let busiest: Vec<String> = threads
        .iter()
        .take(3)
        .map(|(name, cpu)| format!("{name} {cpu:.2} s ({:.0}% of the drain)", 100.0 * cpu / span))
        .collect();
    println!(
        "batched, in process: the bridge's busiest threads: {}",
        busiest.join(", ")
    );

    // 2. The seed's design: one message at a time through HTTP /predict, flushed each time.
    // Against this server, or the one `XGSERVE_BENCH_PREDICT_URL` names (the Bento service of
    // benches/bento/run, say).
    let (url, server) = match std::env::var("XGSERVE_BENCH_PREDICT_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let (server, port) = start_server("bench-server", &[], &[], &logs);
            (format!("http://127.0.0.1:{port}/predict"), Some(server))
        }
    };
    let mut bridge = start_bridge(
        "bench-loop",
        &broker,
        &[
            "--group-id",
            "bench-loop",
            "--sink-topic",
            "priced_loop",
            "--dead-letter-topic",
            "dlq",
            "--predict-url",
            &url,
            "--max-batch",
            "1",
            "--batches-in-flight",
            "1",
            "--price-format",
            "float",
        ],
        &logs,
    );
    let Reading { first, last, .. } = read(
        &brokers,
        "bench-reader",
        "priced_loop",
        loop_n,
        Duration::from_secs(600),
    );
    bridge.assert_running();
    drop(bridge);
    drop(server);
    let span = (last - first).max(1) as f64 / 1000.0;
    let looped = (loop_n - 1) as f64 / span;
    println!(
        "per message over HTTP to {url}, flushed each time: {loop_n} events in {span:.2} s = {looped:.0} events/s; \
         batched is {:.0}x",
        batched / looped
    );

    // 3. Insert to sink, end to end.
    let postgres = Postgres::start(&logs);
    let state = tempfile::tempdir().unwrap();
    let mut e2e_broker = Broker::start(&logs);
    for topic in [SOURCE_TOPIC, "car_data_predicted", "car_data_predicted.dlq"] {
        e2e_broker.create_topic(topic, 1);
    }
    let db = runtime.block_on(postgres.connect());
    runtime.block_on(async {
        db.batch_execute(
            "CREATE TABLE car_data_predicted (id INTEGER PRIMARY KEY, model TEXT, year INTEGER, price INTEGER, \
             transmission TEXT, mileage INTEGER, fuel_type TEXT, tax INTEGER, mpg DOUBLE PRECISION, \
             engine_size DOUBLE PRECISION, suggested_price INTEGER, synced_at TIMESTAMPTZ);
             CREATE FUNCTION stamp() RETURNS trigger AS $$ BEGIN NEW.synced_at := clock_timestamp(); RETURN NEW; END $$
             LANGUAGE plpgsql;
             CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON car_data_predicted FOR EACH ROW EXECUTE FUNCTION stamp();",
        )
        .await
        .unwrap();
    });
    let mut debezium = start_debezium(&postgres, &e2e_broker, state.path(), &logs);
    let pg = postgres.url("car_database");
    let mut bridge = start_bridge(
        "bench-e2e",
        &e2e_broker,
        &["--pg-sink", &pg, "--group-id", "bench-e2e"],
        &logs,
    );
    let rows = services::ford_rows(&data(), 2_000);
    // Warm up: the first row waits for Debezium's snapshot and the group join.
    runtime.block_on(services::insert_cars(&db, &rows[..1]));
    wait_until("the first row in the sink", Duration::from_secs(180), || {
        debezium.assert_running();
        bridge.assert_running();
        let n = runtime
            .block_on(db.query_one("SELECT count(*) FROM car_data_predicted", &[]))
            .unwrap();
        (n.get::<_, i64>(0) == 1).then_some(())
    });
    let rate = 200.0;
    let mut inserted = Vec::new();
    let start = Instant::now();
    for (i, row) in rows[1..].iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        runtime.block_on(services::insert_cars(&db, std::slice::from_ref(row)));
        inserted.push(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
    }
    let n = rows.len() as i64;
    wait_until("every row in the sink", Duration::from_secs(120), || {
        let count = runtime
            .block_on(db.query_one("SELECT count(*) FROM car_data_predicted", &[]))
            .unwrap();
        (count.get::<_, i64>(0) == n).then_some(())
    });
    let synced = runtime
        .block_on(db.query(
            "SELECT id, extract(epoch FROM synced_at)::float8 FROM car_data_predicted WHERE id > 1 ORDER BY id",
            &[],
        ))
        .unwrap();
    let mut latencies: Vec<f64> = synced
        .iter()
        .map(|r| {
            let id: i32 = r.get(0);
            let at: f64 = r.get(1);
            (at - inserted[id as usize - 2]) * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "insert to sink (Postgres → Debezium → tansu → bridge → Postgres), {} rows at {rate} rows/s: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    bridge.assert_running();
    debezium.assert_running();
    broker.process.assert_running();
    e2e_broker.process.assert_running();
}
