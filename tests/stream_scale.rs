//! The bridge as a member of a consumer group, with real parts on loopback: a tansu broker, a
//! six-partition source topic fed without pause by a producer, bridges joining and leaving one
//! group with the Postgres sink, and every way a member goes: a rolling restart (SIGTERM, then the
//! same member back), a crash (SIGKILL, then back under its static membership), and the group
//! scaled 1 → 3 → 1. Each key gets many versions: updates, deletes (tombstones) and re-inserts.
//!
//! It fails on any miss: every key's final state, in the sink topic, in a consumer-group read of it
//! and in Postgres, must be its latest version (or deleted); the group's committed offsets, sampled
//! throughout, must never move backwards. Duplicates (at least once) are counted and reported.
//!
//! Each membership change costs a group rebalance or two: a run takes about two minutes, most of
//! them waiting for the group.
#![cfg(feature = "stream")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{free_port, metric, terminate, wait_until, Process};
use common::seed_events::{key_schema, message, value_schema};
use common::services::{start_bridge_logging, Broker, Postgres};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;

const SOURCE: &str = "cars.scale";
const SINK: &str = "cars.scale.priced";
const DEAD_LETTERS: &str = "cars.scale.dlq";
const GROUP: &str = "scale";
const PARTITIONS: i32 = 6;
/// Keys the events cycle through: event `i` is version `i / KEYS + 1` of key `i % KEYS + 1`.
const KEYS: usize = 2_000;
const AT_LEAST: usize = 30_000;
/// Events per second while the group changes.
const RATE: usize = 250;

/// Version `v` of a key: a delete every fourth version of every third key (re-inserted by the next
/// version), otherwise the row with its version as its price.
fn event(i: usize) -> (i32, u32, Option<String>) {
    let key = (i % KEYS + 1) as i32;
    let version = (i / KEYS + 1) as u32;
    if key % 3 == 0 && version.is_multiple_of(4) {
        return (key, version, None);
    }
    let payload = json!({"id": key, "model": " Focus", "year": 2015 + (version % 5), "price": version,
        "transmission": "Manual", "mileage": 1000 * version, "fuel_type": "Petrol", "tax": 145, "mpg": 55.4,
        "engine_size": 1.0, "suggested_price": null});
    (key, version, Some(message(&value_schema(), &payload)))
}

fn key_of(id: i32) -> String {
    message(&key_schema(), &json!({ "id": id }))
}

fn id_of_key(key: &[u8]) -> i32 {
    let key: serde_json::Value = serde_json::from_slice(key).unwrap();
    key["payload"]["id"].as_i64().unwrap() as i32
}

/// Produces events in order, `RATE` a second, until told to stop and at least `AT_LEAST` are out;
/// returns how many it produced (all acknowledged).
fn feed(brokers: String, stop: Arc<AtomicBool>, produced: Arc<AtomicUsize>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let started = Instant::now();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) || i < AT_LEAST {
            let (key, _, value) = event(i);
            let key = key_of(key);
            let mut record = BaseRecord::<String, String>::to(SOURCE).key(&key);
            if let Some(value) = &value {
                record = record.payload(value);
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
            i += 1;
            produced.store(i, Ordering::Relaxed);
            producer.poll(Duration::ZERO);
            let due = started + Duration::from_secs_f64(i as f64 / RATE as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        producer.flush(Duration::from_secs(60)).unwrap();
        i
    })
}

/// Samples the group's committed offsets of the source partitions every half second, recording
/// any that moved backwards.
struct Sampler {
    stop: Arc<AtomicBool>,
    backwards: Arc<Mutex<Vec<String>>>,
    samples: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<BTreeMap<i32, i64>>>,
}

impl Sampler {
    fn start(brokers: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let backwards = Arc::new(Mutex::new(Vec::new()));
        let samples = Arc::new(AtomicUsize::new(0));
        // A consumer with the group's id that never subscribes reads its offsets without joining.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let thread = {
            let (stop, backwards, samples) = (stop.clone(), backwards.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut last = BTreeMap::<i32, i64>::new();
                let mut list = TopicPartitionList::new();
                for p in 0..PARTITIONS {
                    list.add_partition(SOURCE, p);
                }
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(committed) = consumer.committed_offsets(list.clone(), Duration::from_secs(5)) {
                        for e in committed.elements() {
                            let Offset::Offset(offset) = e.offset() else { continue };
                            let previous = last.insert(e.partition(), offset);
                            if previous.is_some_and(|p| p > offset) {
                                // When, to find the commits in the members' logs (UTC there).
                                let at = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap()
                                    .as_secs_f64();
                                backwards.lock().unwrap().push(format!(
                                    "partition {}: {} then {offset}, seen at unix time {at:.1}",
                                    e.partition(),
                                    previous.unwrap()
                                ));
                            }
                        }
                        samples.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                last
            })
        };
        Sampler {
            stop,
            backwards,
            samples,
            thread: Some(thread),
        }
    }

    /// The last committed offsets, how many samples were taken, and every backward move seen.
    fn finish(mut self) -> (BTreeMap<i32, i64>, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let last = self.thread.take().unwrap().join().unwrap();
        let backwards = std::mem::take(&mut *self.backwards.lock().unwrap());
        (last, self.samples.load(Ordering::Relaxed), backwards)
    }
}

/// One `xgserve stream` member: its process, its static membership and its metrics port.
struct Member {
    name: String,
    process: Process,
    metrics: u16,
}

struct Group<'a> {
    broker: &'a Broker,
    pg: String,
    logs: &'a Path,
    strategy: &'a str,
    /// Whether members join with `group.instance.id` (their name).
    static_members: bool,
    starts: usize,
}

impl Group<'_> {
    fn start(&mut self, name: &str) -> Member {
        self.starts += 1;
        let metrics = free_port();
        let (metrics_arg, strategy) = (
            metrics.to_string(),
            format!("partition.assignment.strategy={}", self.strategy),
        );
        let mut args = vec![
            "--source-topics",
            SOURCE,
            "--sink-topic",
            SINK,
            "--dead-letter-topic",
            DEAD_LETTERS,
            "--group-id",
            GROUP,
            "--pg-sink",
            &self.pg,
            "--pg-table",
            "cars_scale",
            "--max-batch",
            "200",
            "--metrics-port",
            &metrics_arg,
            "--consumer-option",
            &strategy,
            "--consumer-option",
            "session.timeout.ms=10000",
            "--log-format",
            "json",
        ];
        // A restarted member takes its own place (a member killed with SIGKILL keeps its
        // partitions in tansu 0.6 until a member with its instance id comes back).
        let instance = format!("group.instance.id={name}");
        if self.static_members {
            args.extend(["--consumer-option", &instance]);
        }
        let log = format!("{name}-{}", self.starts);
        // Every commit and the broker's answer to it, so a failure shows how members' commits interleaved.
        let process = start_bridge_logging(
            &log,
            self.broker,
            &args,
            self.logs,
            "info,xgserve::stream::kafka=debug,rdkafka=warn",
        );
        Member {
            name: name.to_owned(),
            process,
            metrics,
        }
    }
}

impl Member {
    /// A counter or gauge of this process's metrics.
    fn metric(&mut self, name: &str) -> Option<f64> {
        self.process.assert_running();
        metric(self.metrics, name)
    }

    fn consumed(&mut self) -> Option<f64> {
        self.metric("xgserve_stream_consumed_total")
    }

    fn assigned(&mut self) -> Option<f64> {
        self.metric("xgserve_stream_assigned_partitions")
    }

    fn stop(mut self) {
        let status = terminate(&mut self.process, Duration::from_secs(60));
        assert!(
            status.success(),
            "{} ends cleanly on SIGTERM: {status}\n{}",
            self.name,
            self.process.tail()
        );
    }
}

/// Waits until the members share every source partition, each owning some, and each has consumed
/// since it got them.
fn wait_spread(members: &mut [&mut Member], within: Duration) {
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    wait_until(&format!("the partitions spread over {names:?}"), within, || {
        let mut total = 0.0;
        for m in members.iter_mut() {
            let assigned = m.assigned().filter(|&n| n > 0.0)?;
            m.consumed().filter(|&n| n > 0.0)?;
            total += assigned;
        }
        (total == f64::from(PARTITIONS)).then_some(())
    });
}

/// The topic's records, every partition read from its start to its high watermark, outside any
/// group.
fn read_topic(brokers: &str, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "scale-partition-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in partitions(&consumer, topic) {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        if high > low {
            ends.insert(p, high);
            assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    read_until_ends(&consumer, ends)
}

/// The topic's partitions, as the broker lists them.
fn partitions(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    metadata.topics()[0].partitions().iter().map(|p| p.id()).collect()
}

/// Polls until every partition in `ends` has been read up to its end offset, or two minutes pass.
fn read_until_ends(consumer: &BaseConsumer, mut ends: BTreeMap<i32, i64>) -> Vec<rdkafka::message::OwnedMessage> {
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            if ends.get(&m.partition()).is_some_and(|&end| m.offset() + 1 >= end) {
                ends.remove(&m.partition());
            }
            messages.push(m.detach());
        }
    }
    assert!(ends.is_empty(), "partitions not read to their end: {ends:?}");
    messages
}

/// The same topic read as a consumer group member would: subscribed in a new group, up to the
/// high watermarks.
fn read_topic_in_group(brokers: &str, topic: &str, group: &str) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer = common::services::reader(brokers, group, topic);
    let mut ends = BTreeMap::new();
    for p in partitions(&consumer, topic) {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        if high > low {
            ends.insert(p, high);
        }
    }
    read_until_ends(&consumer, ends)
}

/// Each key's final state in a read of the sink topic (records of a key stay in one partition,
/// in order): `Some(price)` or `None` for deleted; and the records that repeat a (key, version).
fn final_states(records: &[rdkafka::message::OwnedMessage]) -> (BTreeMap<i32, Option<u32>>, usize) {
    let mut states = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    for m in records {
        let id = id_of_key(m.key().expect("sink records keep their key"));
        let version = m.payload().map(|value| {
            let value: serde_json::Value = serde_json::from_slice(value).unwrap();
            assert!(value["payload"]["suggested_price"].is_i64(), "priced: {value}");
            value["payload"]["price"].as_u64().unwrap() as u32
        });
        if !seen.insert((id, version)) && version.is_some() {
            duplicates += 1;
        }
        states.insert(id, version);
    }
    (states, duplicates)
}

/// What every key's final state must be after the first `n` events.
fn expected_states(n: usize) -> BTreeMap<i32, Option<u32>> {
    (0..n)
        .map(|i| {
            let (key, version, value) = event(i);
            (key, value.map(|_| version))
        })
        .collect()
}

/// Up to ten keys whose state in `got` is not the expected one (a key in only one of them too).
fn differences(what: &str, got: &BTreeMap<i32, Option<u32>>, expected: &BTreeMap<i32, Option<u32>>) -> Vec<String> {
    let keys: BTreeSet<&i32> = got.keys().chain(expected.keys()).collect();
    keys.into_iter()
        .filter(|key| got.get(key) != expected.get(key))
        .take(10)
        .map(|key| {
            format!(
                "{what}: key {key} is {:?}, expected {:?}",
                got.get(key),
                expected.get(key)
            )
        })
        .collect()
}

/// Starts the services and runs `plan` against the group while events flow, then checks the
/// final states, the committed offsets and the duplicates.
fn scale_out(name: &str, strategy: &str, static_members: bool, plan: impl FnOnce(&mut Group) -> Member) {
    let logs = common::repo().join(format!("target/stream-scale-{name}"));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    let postgres = Postgres::start(&logs);
    let broker = Broker::start(&logs);
    broker.create_topic(SOURCE, PARTITIONS as u32);
    broker.create_topic(SINK, PARTITIONS as u32);
    broker.create_topic(DEAD_LETTERS, 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(postgres.connect());

    let sampler = Sampler::start(&broker.brokers());
    let stop = Arc::new(AtomicBool::new(false));
    let fed = Arc::new(AtomicUsize::new(0));
    let feeder = feed(broker.brokers(), stop.clone(), fed.clone());
    let started = Instant::now();
    let mut group = Group {
        broker: &broker,
        pg: postgres.url("car_database"),
        logs: &logs,
        strategy,
        static_members,
        starts: 0,
    };
    let last = plan(&mut group);
    assert!(
        !feeder.is_finished(),
        "the events must flow through every change of the group, but the feed ended first"
    );
    stop.store(true, Ordering::Relaxed);
    let events = feeder.join().unwrap();
    let expected = expected_states(events);

    // The last member drains what is left, then stops cleanly.
    let mut last = last;
    let table = || {
        runtime.block_on(async {
            let rows = db.query("SELECT id, price FROM cars_scale", &[]).await.unwrap();
            rows.iter()
                .map(|r| (r.get::<_, i32>(0), Some(r.get::<_, i32>(1) as u32)))
                .collect::<BTreeMap<i32, Option<u32>>>()
        })
    };
    let live: BTreeMap<i32, Option<u32>> = expected
        .iter()
        .filter(|(_, s)| s.is_some())
        .map(|(k, s)| (*k, *s))
        .collect();
    wait_until(
        "every key's latest version in Postgres",
        Duration::from_secs(300),
        || {
            last.process.assert_running();
            (table() == live).then_some(())
        },
    );
    let brokers = broker.brokers();
    last.stop();
    let (committed, samples, backwards) = sampler.finish();
    let elapsed = started.elapsed();

    let mut misses = Vec::new();
    let sink = read_topic(&brokers, SINK);
    let (in_topic, duplicates) = final_states(&sink);
    misses.extend(differences("sink topic", &in_topic, &expected));
    let in_group = final_states(&read_topic_in_group(&brokers, SINK, &format!("scale-check-{name}"))).0;
    misses.extend(differences("group read of the sink topic", &in_group, &expected));
    misses.extend(differences("Postgres", &table(), &live));
    let dead = read_topic(&brokers, DEAD_LETTERS);
    // Everything consumed is committed: the committed offsets are the source partitions' ends.
    let source = read_topic(&brokers, SOURCE);
    let mut ends = BTreeMap::new();
    for m in &source {
        ends.insert(m.partition(), m.offset() + 1);
    }
    let report = format!(
        "{name} ({strategy}): {events} events over {KEYS} keys in {:.0} s; {} sink records, {duplicates} of them \
         repeating a key's version; {} dead letters; committed offsets sampled {samples} times, backwards {}\n",
        elapsed.as_secs_f64(),
        sink.len(),
        dead.len(),
        backwards.len(),
    );
    eprint!("{report}");
    std::fs::write(logs.join("report.txt"), &report).unwrap();
    assert!(backwards.is_empty(), "committed offsets moved backwards: {backwards:?}");
    assert!(samples > 10, "the committed offsets were sampled throughout: {report}");
    assert_eq!(source.len(), events, "the source topic holds what was fed");
    assert!(misses.is_empty(), "{report}{}", misses.join("\n"));
    assert!(dead.is_empty(), "no event here is bad: {report}");
    assert_eq!(committed, ends, "the group's committed offsets are the source's ends");
}

/// The group's life while events flow: 1 -> 3 members, a rolling restart (SIGTERM, then the same
/// member back), with `crash` one member killed and restarted, then 3 -> 1. Returns the last member.
fn scale_up_restart_and_down(group: &mut Group, crash: bool) -> Member {
    let join = Duration::from_secs(180);
    let mut a = group.start("bridge-a");
    wait_spread(&mut [&mut a], join);
    let mut b = group.start("bridge-b");
    let mut c = group.start("bridge-c");
    wait_spread(&mut [&mut a, &mut b, &mut c], join);
    b.stop();
    let mut b = group.start("bridge-b");
    wait_spread(&mut [&mut a, &mut b, &mut c], join);
    if crash {
        // Killed, and back under its static membership.
        c.process.kill();
        c = group.start("bridge-c");
        wait_spread(&mut [&mut a, &mut b, &mut c], join);
    }
    // The group hands everything to a once the others have left.
    b.stop();
    c.stop();
    wait_spread(&mut [&mut a], join);
    a
}

/// Eager assignment (librdkafka's default, range): every rebalance takes all partitions away and
/// hands them out again. With static membership, so the crashed member comes back.
#[test]
fn a_group_scaled_restarted_and_crashed_under_load_ends_with_every_key_latest() {
    scale_out("eager", "range", true, |group| scale_up_restart_and_down(group, true));
}

/// Cooperative-sticky assignment: a rebalance moves only the partitions that change hands, in two
/// rounds. Without static membership: tansu 0.6.0 takes a static member's rejoin with new metadata
/// (the partitions it gave up) without a new generation, so the second round never reached the
/// other member; and so without a crash, whose member only a static id brings back in tansu.
#[test]
fn a_cooperative_group_hands_partitions_over_without_losing_a_version() {
    scale_out("cooperative", "cooperative-sticky", false, |group| {
        scale_up_restart_and_down(group, false)
    });
}
