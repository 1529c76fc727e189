//! The bridge as a consumer group, with real parts on loopback (tansu on SQLite, as the tests run it):
//!
//! 1. **Instances**: a backlog of Debezium events in a six-partition topic, drained by 1, 2 and 3
//!    `xgserve stream` members of a fresh group each, in alternating rounds (1, 2, 3, 3, 2, 1, ...).
//!    Events/s from the moment every member has its partitions (the joins are not timed) until the
//!    members have produced every record, from their own counters.
//! 2. **Rolling restart**: events written at a steady rate while two members price them; one is
//!    stopped with SIGTERM and started again, as a rolling update does. Latency from each event's
//!    write to its priced record's write (the records' own timestamps), p50/p99/max, for the
//!    events written during the restart (from the SIGTERM until the member consumes again, plus
//!    5 s) against those written in the 20 s before it.
//!
//! Run: `cargo bench --bench scale --features stream` (needs what `tests/run` installs).
//! `XGSERVE_BENCH_EVENTS` (default 600000: one member drains tens of thousands while the others
//! join) sets the backlog, `XGSERVE_BENCH_ROUNDS` (default 2)
//! the rounds of 1, 2 and 3 members, `XGSERVE_BENCH_RATE` (default 1000) the rolling restart's
//! events per second.

#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/common/seed_events.rs"]
mod seed_events;
#[path = "../tests/common/services.rs"]
mod services;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use process::{free_port, terminate, wait_until, Process};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;
use services::{start_bridge, Broker};

const PARTITIONS: u32 = 6;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Event `i`: a row keyed by `i + 1`, as Debezium writes it (flattened, JSON with schemas).
fn event(i: usize) -> (String, String) {
    let id = i + 1;
    let payload = json!({"id": id, "model": " Focus", "year": 2015 + (i % 5), "price": 9000 + i % 1000,
        "transmission": "Manual", "mileage": 1000 + i % 90_000, "fuel_type": "Petrol", "tax": 145, "mpg": 55.4,
        "engine_size": 1.0, "suggested_price": null});
    let key = seed_events::message(&seed_events::key_schema(), &json!({ "id": id }));
    (key, seed_events::message(&seed_events::value_schema(), &payload))
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Writes events `range` to `topic`, waiting while librdkafka's queue is full.
fn write(producer: &BaseProducer, topic: &str, range: std::ops::Range<usize>) {
    for i in range {
        let (key, value) = event(i);
        let mut record = BaseRecord::<String, String>::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
}

/// A member and its metrics port.
struct Member {
    process: Process,
    metrics: u16,
}

impl Member {
    fn start(broker: &Broker, name: &str, group: &str, source: &str, sink: &str, logs: &Path) -> Member {
        let metrics = free_port();
        let port = metrics.to_string();
        let args = [
            "--source-topics",
            source,
            "--sink-topic",
            sink,
            "--dead-letter-topic",
            "scale.dlq",
            "--group-id",
            group,
            "--metrics-port",
            &port,
        ];
        Member {
            process: start_bridge(name, broker, &args, logs),
            metrics,
        }
    }

    fn metric(&mut self, name: &str) -> Option<f64> {
        self.process.assert_running();
        process::metric(self.metrics, name)
    }
}

/// Waits until the members own every partition between them and each consumes.
fn wait_spread(members: &mut [Member]) {
    wait_until("the partitions spread", Duration::from_secs(300), || {
        let mut total = 0.0;
        for m in members.iter_mut() {
            total += m.metric("xgserve_stream_assigned_partitions").filter(|&n| n > 0.0)?;
        }
        (total == f64::from(PARTITIONS)).then_some(())
    });
}

fn produced(members: &mut [Member]) -> f64 {
    members
        .iter_mut()
        .map(|m| m.metric("xgserve_stream_produced_total").unwrap_or(0.0))
        .sum()
}

/// Drains the backlog with `k` members of a fresh group; events/s once they all have partitions.
fn drain(broker: &Broker, k: usize, round: usize, events: usize, logs: &Path) -> f64 {
    let group = format!("drain-{k}-{round}");
    let sink = format!("scale.priced.{k}.{round}");
    broker.create_topic(&sink, PARTITIONS);
    let mut members: Vec<Member> = (0..k)
        .map(|i| Member::start(broker, &format!("{group}-{i}"), &group, "scale.source", &sink, logs))
        .collect();
    wait_spread(&mut members);
    let (start, at_start) = (Instant::now(), produced(&mut members));
    // The first member drains while the others join; what is left is timed, evenly spread over
    // the partitions (the first member read them all alike).
    assert!(
        at_start < events as f64 / 2.0,
        "{k} member(s) drained {at_start} of {events} events before all joined: make XGSERVE_BENCH_EVENTS larger"
    );
    loop {
        let done = produced(&mut members);
        if done >= events as f64 {
            let rate = (done - at_start) / start.elapsed().as_secs_f64();
            for mut m in members {
                terminate(&mut m.process, Duration::from_secs(60));
            }
            return rate;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut latencies: Vec<f64>) -> String {
    latencies.sort_by(f64::total_cmp);
    format!(
        "{} events: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    )
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Two members price a steady stream; one restarts. Latencies before and during the restart.
fn rolling_restart(broker: &Broker, rate: usize, logs: &Path) -> (String, String) {
    broker.create_topic("scale.steady", PARTITIONS);
    broker.create_topic("scale.steady.priced", PARTITIONS);
    let start = |name: &str| Member::start(broker, name, "steady", "scale.steady", "scale.steady.priced", logs);
    let mut members = vec![start("steady-a"), start("steady-b")];
    wait_spread(&mut members);
    let brokers = broker.brokers();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let producer = producer(&brokers);
            let begun = Instant::now();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                write(&producer, "scale.steady", i..i + 1);
                i += 1;
                let due = begun + Duration::from_secs_f64(i as f64 / rate as f64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            producer.flush(Duration::from_secs(30)).unwrap();
            i
        })
    };
    std::thread::sleep(Duration::from_secs(20));
    let steady = (now_ms() - 20_000, now_ms());
    let mut b = members.pop().unwrap();
    terminate(&mut b.process, Duration::from_secs(60));
    let mut members = vec![members.pop().unwrap(), start("steady-b")];
    wait_spread(&mut members);
    std::thread::sleep(Duration::from_secs(5));
    let restart = (steady.1, now_ms());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();

    // Each event's write time (the source record's timestamp) and its priced record's.
    let source = read_all(broker, "scale.steady", written);
    let sink = read_all(broker, "scale.steady.priced", written);
    let written_at: HashMap<Vec<u8>, i64> = source.into_iter().collect();
    let mut first_priced: HashMap<Vec<u8>, i64> = HashMap::new();
    for (key, t) in sink {
        first_priced.entry(key).or_insert(t);
    }
    let window = |(from, to): (i64, i64)| {
        written_at
            .iter()
            .filter(|(_, &t)| t >= from && t < to)
            .map(|(key, &t)| (first_priced[key] - t) as f64)
            .collect::<Vec<f64>>()
    };
    for mut m in members {
        terminate(&mut m.process, Duration::from_secs(60));
    }
    (summary(window(steady)), summary(window(restart)))
}

/// Keys and timestamps of a topic's first `n` distinct keys' records, and every record after.
fn read_all(broker: &Broker, topic: &str, n: usize) -> Vec<(Vec<u8>, i64)> {
    let consumer = services::reader(&broker.brokers(), &format!("reader-{topic}"), topic);
    let mut records = Vec::new();
    let mut keys = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while keys.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            let key = m.key().unwrap().to_vec();
            keys.insert(key.clone());
            records.push((key, m.timestamp().to_millis().unwrap()));
        }
    }
    assert_eq!(keys.len(), n, "{topic}: every event's record");
    consumer.unsubscribe();
    records
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `cargo bench -- --list` probe bench binaries
    }
    let events = env_usize("XGSERVE_BENCH_EVENTS", 600_000);
    let rounds = env_usize("XGSERVE_BENCH_ROUNDS", 2);
    let rate = env_usize("XGSERVE_BENCH_RATE", 1000);
    let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-scale");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    let broker = Broker::start(&logs);
    broker.create_topic("scale.source", PARTITIONS);
    broker.create_topic("scale.dlq", 1);
    println!("writing {events} events to scale.source ({PARTITIONS} partitions) ...");
    let producer = producer(&broker.brokers());
    write(&producer, "scale.source", 0..events);
    producer.flush(Duration::from_secs(120)).unwrap();

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 { vec![1, 2, 3] } else { vec![3, 2, 1] };
        for k in order {
            let rate = drain(&broker, k, round, events, &logs);
            println!("round {round}: {k} member(s) drain {events} events at {rate:.0} events/s");
            rates[k - 1].push(rate);
        }
    }
    for (i, r) in rates.iter_mut().enumerate() {
        r.sort_by(f64::total_cmp);
        println!(
            "{} member(s): median {:.0} events/s ({:.0}–{:.0}) over {} rounds",
            i + 1,
            r[(r.len() - 1) / 2],
            r[0],
            r[r.len() - 1],
            r.len()
        );
    }
    let (steady, restart) = rolling_restart(&broker, rate, &logs);
    println!("write to priced record at {rate} events/s, 2 members, steady: {steady}");
    println!("the same while one member restarts (SIGTERM, back, consuming, + 5 s): {restart}");
}
