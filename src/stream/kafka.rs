//! Kafka: consume a batch, price it, produce the priced records, tombstones and dead letters, and
//! commit the batch's offsets only once the broker has acknowledged every one of its records (and
//! the Postgres sink has committed). A crash anywhere before the commit re-prices and re-sends the
//! batch on restart: at least once, never lost. The producer is idempotent, so its own retries add
//! no copies.
//!
//! The delivery state lives in [`Ledger`]; three things drive it: the loop (a batch consumed), the
//! producer's delivery reports (a batch acknowledged, on librdkafka's polling thread), and the
//! consumer's rebalance callbacks (partitions assigned or revoked). Before partitions go, the
//! records in flight are given a bounded time to land, so the batches that did are committed by
//! this member and the partitions' next owner starts after them.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::ledger::{BatchId, Ledger, Offsets, Partition};
use super::metrics::Metrics;
use super::pg::{Op, Sink};
use super::{debezium, Bridge, Message, Outcome};

/// Dead-letter headers: what went wrong and where the message came from.
pub const HEADER_ERROR: &str = "xgserve.error";
pub const HEADER_ERROR_TYPE: &str = "xgserve.error.type";
pub const HEADER_TOPIC: &str = "xgserve.source.topic";
pub const HEADER_PARTITION: &str = "xgserve.source.partition";
pub const HEADER_OFFSET: &str = "xgserve.source.offset";
/// On a dead letter sent without the message's value (too large to produce): why.
pub const HEADER_VALUE_OMITTED: &str = "xgserve.value.omitted";

/// A batch whose records are on their way, counted down by their delivery reports.
struct InFlight {
    /// The batch in the ledger, which knows its offsets.
    id: BatchId,
    /// Records not yet acknowledged, plus one while the batch is being enqueued, so that it cannot
    /// complete before its last record is sent. Each message ends as exactly one record.
    remaining: AtomicUsize,
    started: Instant,
}

/// A produced record, handed back with its delivery report.
struct Outgoing {
    batch: Arc<InFlight>,
    kind: Delivered,
    /// The message it answers, named in a dead letter's headers.
    source: Source,
}

/// Where a message came from.
#[derive(Clone)]
struct Source {
    topic: String,
    partition: i32,
    offset: i64,
}

impl Source {
    fn of(message: &Message) -> Source {
        Source {
            topic: message.topic.clone(),
            partition: message.partition,
            offset: message.offset,
        }
    }
}

/// What a delivered record counts as.
enum Delivered {
    Priced,
    Tombstone,
    DeadLetter(String),
}

/// A record the broker refused for good, waiting for the loop to dead-letter it in its place.
struct Refused {
    outgoing: Box<Outgoing>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    error: String,
}

type Producer = ThreadedProducer<Deliveries>;

/// The producer's side of the delivery state: counts each delivery report into its batch, notes a
/// batch whose records are all acknowledged in the ledger, and wakes the loop to commit it.
struct Deliveries {
    metrics: Arc<Metrics>,
    ledger: Arc<Mutex<Ledger>>,
    /// Wakes the loop: a batch is acknowledged, a record is refused, or the bridge must stop.
    wake: Arc<Notify>,
    /// Refused records for the loop to dead-letter (a producer's context cannot produce).
    refused: Mutex<Vec<Refused>>,
    /// Why the bridge must stop: a record the broker did not take that is not the record's fault
    /// (librdkafka has retried it), or a dead letter it did not take.
    failed: Mutex<Option<String>>,
}

/// The ledger's methods do not panic midway, and neither do the lists': a poisoned lock still holds
/// a whole state.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Outgoing>;

    fn delivery(&self, result: &DeliveryResult<'_>, outgoing: Box<Outgoing>) {
        let dead_letter = matches!(outgoing.kind, Delivered::DeadLetter(_));
        match result {
            Ok(stored) => {
                // Where the broker says it stored the record: with this module's log at debug, a
                // record missing from a topic can be told from one never sent.
                tracing::debug!(
                    sink = !dead_letter,
                    partition = stored.partition(),
                    offset = stored.offset(),
                    "acknowledged"
                );
                match &outgoing.kind {
                    Delivered::Priced => self.metrics.produced.inc(),
                    Delivered::Tombstone => self.metrics.tombstones.inc(),
                    Delivered::DeadLetter(kind) => self.metrics.dead_letter(kind),
                }
                self.done(&outgoing.batch);
            }
            Err((error, record)) if permanent(error) && !dead_letter => {
                let refused = Refused {
                    key: record.key().map(<[u8]>::to_vec),
                    value: record.payload().map(<[u8]>::to_vec),
                    error: format!("the broker refused the priced record: {error}"),
                    outgoing,
                };
                lock(&self.refused).push(refused);
                self.wake.notify_one();
            }
            Err((error, _)) => {
                let what = if dead_letter { "a dead letter" } else { "a record" };
                lock(&self.failed).get_or_insert_with(|| {
                    format!("the broker did not take {what} ({error}); stopping before its batch is committed")
                });
                self.wake.notify_one();
            }
        }
    }
}

impl Deliveries {
    /// One of the batch's records is acknowledged (or its enqueueing is over).
    fn done(&self, batch: &InFlight) {
        if batch.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            lock(&self.ledger).acknowledged(batch.id);
            self.metrics
                .batch_seconds
                .observe(batch.started.elapsed().as_secs_f64());
            self.wake.notify_one();
        }
    }
}

/// Where to read and write.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub source_topics: Vec<String>,
    pub sink_topic: String,
    pub dead_letter_topic: String,
    /// Most messages priced in one engine call.
    pub max_batch: usize,
    /// Batches produced and not yet all acknowledged, at most (at least 1). Waiting for each batch's
    /// acknowledgements before consuming the next left the bridge idle for a broker round trip per
    /// batch; with 2 it drained a backlog at about 145,000 events/s, with 8 at about 175,000
    /// (`benches/stream.rs`).
    pub batches_in_flight: usize,
    /// How long a batch waits for more messages after its first.
    pub linger: Duration,
    /// How long the records in flight may take to land when partitions are revoked.
    pub handover: Duration,
    /// Extra librdkafka settings (`security.protocol`, SASL, ...).
    pub options: Options,
}

/// The operator's librdkafka settings: for both clients, then for each alone over those.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub shared: Vec<(String, String)>,
    pub consumer: Vec<(String, String)>,
    pub producer: Vec<(String, String)>,
}

/// Settings the bridge owns: it commits offsets itself, after the records are acknowledged, and
/// its producer must neither lose nor reorder records. Each with what it must be, or `None` when
/// it comes from a flag.
const CONSUMER_OWNED: [(&str, Option<&[&str]>, &str); 3] = [
    (
        "enable.auto.commit",
        Some(&["false"]),
        "offsets are committed once records are acknowledged",
    ),
    ("group.id", None, "use --group-id"),
    ("bootstrap.servers", None, "use --brokers"),
];
const PRODUCER_OWNED: [(&str, Option<&[&str]>, &str); 4] = [
    (
        "acks",
        Some(&["all", "-1"]),
        "a record counts as delivered only when every replica has it",
    ),
    (
        "enable.idempotence",
        Some(&["true"]),
        "a retried record must not be written twice or out of order",
    ),
    ("transactional.id", None, "the bridge does not use transactions"),
    ("bootstrap.servers", None, "use --brokers"),
];

impl Options {
    /// Refuses settings that would break at-least-once delivery or that a flag owns, naming the
    /// setting (never its value, which may be a secret's neighbour).
    pub fn check(&self) -> anyhow::Result<()> {
        let sides = [
            (
                "--kafka-option",
                &self.shared,
                &[&CONSUMER_OWNED[..], &PRODUCER_OWNED[..]][..],
            ),
            ("--consumer-option", &self.consumer, &[&CONSUMER_OWNED[..]][..]),
            ("--producer-option", &self.producer, &[&PRODUCER_OWNED[..]][..]),
        ];
        for (flag, options, owned) in sides {
            for (key, value) in options {
                if key.is_empty() {
                    anyhow::bail!("{flag} takes key=value; one of them has no key (its text is not shown)");
                }
                for (owned_key, allowed, why) in owned.iter().flat_map(|o| o.iter()) {
                    let refused = key.eq_ignore_ascii_case(owned_key)
                        && allowed.is_none_or(|values| !values.iter().any(|v| value.eq_ignore_ascii_case(v)));
                    if refused {
                        match allowed {
                            Some(values) => anyhow::bail!("{flag} {key} may only be {}: {why}", values.join(" or ")),
                            None => anyhow::bail!("{flag} {key} is not allowed: {why}"),
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The consumer's side: reads librdkafka's statistics into the lag gauge and hands partitions over
/// on rebalances.
struct Context {
    metrics: Arc<Metrics>,
    /// The delivery state, shared with the loop and the producer: the rebalance callbacks run
    /// inside `recv`, the delivery reports on the producer's thread.
    ledger: Arc<Mutex<Ledger>>,
    /// Flushed before partitions go, so the records in flight for them land first.
    producer: Producer,
    handover: Duration,
}

impl Context {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.metrics.lag.set(lag);
    }
}

impl ConsumerContext for Context {
    /// Before partitions go: let the records in flight land (within the handover time), commit
    /// what is acknowledged for them, and forget the rest, which their next owner consumes again
    /// (at least once). The commit is synchronous and names every revoked partition this
    /// ownership committed, even with no new offset: its answer comes after those of the earlier,
    /// asynchronous commits, so none of them can land after the next owner's and move the
    /// partition back. Nothing is committed for them afterwards.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance) {
        let Rebalance::Revoke(list) = rebalance else { return };
        let revoked = partitions(list);
        self.metrics.rebalances.inc();
        let started = Instant::now();
        if self.ledger().pending() > 0 {
            // Blocks the loop's thread, which has nothing else to do meanwhile: the partitions are
            // not released until this returns.
            if let Err(e) = self.producer.flush(self.handover) {
                tracing::warn!(error = %e, timeout = ?self.handover,
                    "records in flight did not land within the handover time; their batches are left to the partitions' next owner");
            }
        }
        let last = self.ledger().revoke(revoked.clone());
        if !last.is_empty() {
            match offsets(&last) {
                Ok(offsets) => {
                    if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                        tracing::warn!(error = %e, "the commit before a revoke failed; those records are consumed again");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot name the offsets to commit before a revoke"),
            }
        }
        let (abandoned, owned) = {
            let ledger = self.ledger();
            (ledger.pending(), ledger.owned())
        };
        self.metrics.assigned.set(owned as i64);
        tracing::info!(?revoked, committed = ?last, handover = ?started.elapsed(), batches_still_pending = abandoned,
            "partitions revoked");
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                let owned = {
                    let mut ledger = self.ledger();
                    ledger.assign(assigned.clone());
                    ledger.owned()
                };
                self.metrics.assigned.set(owned as i64);
                tracing::info!(?assigned, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }

    /// The broker's answer to a commit, synchronous or not: which offsets it took, and when, is
    /// what shows how commits from several members interleave on a rebalance.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // Every batch's commit comes here: the list is built only when it is logged.
        let named = || -> Vec<(String, i32, Offset)> {
            offsets
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition(), e.offset()))
                .collect()
        };
        match result {
            Ok(()) if tracing::enabled!(tracing::Level::DEBUG) => {
                tracing::debug!(offsets = ?named(), "the broker took the commit")
            }
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, offsets = ?named(), "the broker refused a commit; those records are consumed again")
            }
        }
    }
}

/// A client's settings: the bridge's defaults, then the operator's shared options, then its
/// options for this client alone.
fn client_config(config: &KafkaConfig, defaults: &[(&str, &str)], own: &[(String, String)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in config.options.shared.iter().chain(own) {
        client.set(key, value);
    }
    client
}

/// Why a client could not be made, naming a refused setting's key but never its value (which may
/// be a password).
fn creation_error(client: &str, error: KafkaError) -> anyhow::Error {
    match error {
        KafkaError::ClientConfig(_, description, key, _value) => {
            anyhow::anyhow!("cannot create the Kafka {client}: setting {key}: {description}")
        }
        other => anyhow::anyhow!("cannot create the Kafka {client}: {other}"),
    }
}

/// Runs the bridge until `shutdown` resolves, then waits for the batches in flight, commits and
/// returns.
pub async fn run(
    config: KafkaConfig,
    bridge: Bridge,
    mut sink: Option<Sink>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = bridge.metrics.clone();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let wake = Arc::new(Notify::new());
    let producer: Producer = client_config(
        &config,
        &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "1")],
        &config.options.producer,
    )
    .create_with_context(Deliveries {
        metrics: metrics.clone(),
        ledger: ledger.clone(),
        wake: wake.clone(),
        refused: Mutex::default(),
        failed: Mutex::default(),
    })
    .map_err(|e| creation_error("producer", e))?;
    let consumer: StreamConsumer<Context> = client_config(
        &config,
        &[
            ("group.id", &config.group_id),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "1000"),
            // A broker answers a fetch as soon as data arrives, but not every Kafka-protocol broker
            // does; a short wait bounds the latency an idle partition adds either way.
            ("fetch.wait.max.ms", "100"),
        ],
        &config.options.consumer,
    )
    .create_with_context(Context {
        metrics: metrics.clone(),
        ledger: ledger.clone(),
        producer: producer.clone(),
        handover: config.handover,
    })
    .map_err(|e| creation_error("consumer", e))?;
    let topics: Vec<&str> = config.source_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("cannot subscribe")?;
    // Learn where the output topics live before the first batch, rather than while it waits.
    let warm = producer.clone();
    let topics = [config.sink_topic.clone(), config.dead_letter_topic.clone()];
    tokio::task::spawn_blocking(move || {
        for topic in &topics {
            if let Err(e) = warm.client().fetch_metadata(Some(topic), Duration::from_secs(10)) {
                tracing::warn!(%topic, error = %e, "cannot read the topic's metadata yet");
            }
        }
    })
    .await
    .context("the metadata task failed")?;
    metrics.ready.store(true, Ordering::Relaxed);
    tracing::info!(topics = ?config.source_topics, sink = %config.sink_topic,
        dead_letters = %config.dead_letter_topic, "consuming");

    let pending = || lock(&ledger).pending();
    tokio::pin!(shutdown);
    loop {
        // While waiting for the next message, settle what the delivery reports bring, so an idle
        // stream still commits what was delivered.
        let first = loop {
            settle(&producer, &consumer, &config).await?;
            tokio::select! {
                biased;
                () = &mut shutdown => break None,
                () = wake.notified() => {}
                message = consumer.recv() => break Some(message),
            }
        };
        let Some(first) = first else { break };
        let started = Instant::now();
        let mut batch = match first {
            Ok(m) => vec![owned(&m)],
            Err(e) => {
                tracing::warn!(error = %e, "consume failed; retrying");
                continue;
            }
        };
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.len() < config.max_batch {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(owned(&m)),
                Ok(Err(e)) => tracing::warn!(error = %e, "consume failed; retrying"),
                Err(_) => break,
            }
        }
        // A rebalance while the batch filled may have taken some of its partitions: their next
        // owner prices those messages, and an older version must not land after its newer one.
        let fetched = batch.len();
        {
            let ledger = lock(&ledger);
            batch.retain(|m| ledger.owns_record(&m.topic, m.partition));
        }
        if batch.len() < fetched {
            tracing::info!(
                dropped = fetched - batch.len(),
                "messages of revoked partitions left to their next owner"
            );
        }
        if batch.is_empty() {
            continue;
        }
        metrics.consumed.inc_by(batch.len() as u64);
        metrics.batch_size.observe(batch.len() as f64);
        // A remote backend that is down holds the batch; a shutdown then leaves it uncommitted.
        let mut outcomes = tokio::select! {
            biased;
            outcomes = bridge.handle(&batch) => outcomes,
            () = &mut shutdown => {
                tracing::warn!("shutting down with a batch unpriced; it is consumed again on restart");
                break;
            }
        };
        if let Some(sink) = sink.as_mut() {
            let (ops, messages) = sink_ops(&batch, &outcomes);
            let applied = sink.apply(&ops).await?;
            metrics.sink_rows.inc_by(applied.changed);
            // A row Postgres refuses goes to the dead letters instead of the sink topic.
            for (op, reason) in applied.refused {
                outcomes[messages[op]] = Outcome::DeadLetter {
                    kind: "sink_refused".into(),
                    error: format!("the Postgres sink refused the row: {reason}"),
                };
            }
        }
        let id = lock(&ledger).consumed(batch.iter().map(|m| ((m.topic.clone(), m.partition), m.offset)));
        let in_flight = Arc::new(InFlight {
            id,
            remaining: AtomicUsize::new(batch.len() + 1),
            started,
        });
        enqueue(&producer, &config, &batch, &outcomes, &in_flight).await?;
        producer.context().done(&in_flight);
        // The next batch is fetched and priced while this one's records are on their way; batches
        // are committed in order, each once all its records are acknowledged.
        loop {
            settle(&producer, &consumer, &config).await?;
            if pending() < config.batches_in_flight.max(1) {
                break;
            }
            wake.notified().await;
        }
    }
    loop {
        settle(&producer, &consumer, &config).await?;
        if pending() == 0 {
            break;
        }
        wake.notified().await;
    }
    metrics.ready.store(false, Ordering::Relaxed);
    // The commits so far were asynchronous: make the last ones sure, for the partitions still owned.
    let last = lock(&ledger).owned_commits();
    if !last.is_empty() {
        if let Err(e) = consumer.commit(&offsets(&last)?, CommitMode::Sync) {
            tracing::warn!(error = %e, "the final commit failed; the last batch will be consumed again");
        }
    }
    leave(&consumer, &ledger).await;
    tracing::info!("stopped consuming; every priced batch is committed");
    Ok(())
}

/// Leaves the group, so the partitions go to the other members now. A member with a static
/// `group.instance.id` would otherwise hold them until its session expires (Kafka's static members
/// send no leave on close): right for a crashed container coming back into its place, wrong for a
/// pod that a rollout or a scale-down stops for good, which is what SIGTERM means.
async fn leave(consumer: &StreamConsumer<Context>, ledger: &Mutex<Ledger>) {
    consumer.unsubscribe();
    // The revoke is served while polling; what arrives meanwhile is left uncommitted, for the
    // partitions' next owner.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lock(ledger).owned() > 0 && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
}

fn owned(message: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    Message {
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    }
}

/// What the delivery reports brought, handled on the loop: stops on a failure, dead-letters the
/// records the broker refused for good, and commits what is acknowledged.
async fn settle(producer: &Producer, consumer: &StreamConsumer<Context>, config: &KafkaConfig) -> anyhow::Result<()> {
    let deliveries = producer.context();
    if let Some(why) = lock(&deliveries.failed).take() {
        anyhow::bail!(why);
    }
    let refused = std::mem::take(&mut *lock(&deliveries.refused));
    for r in refused {
        let Outgoing { batch, source, .. } = *r.outgoing;
        let letter = Letter {
            source: &source,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            kind: "unproducible",
            error: &r.error,
        };
        dead_letter(producer, config, letter, batch).await?;
    }
    commit(consumer);
    Ok(())
}

/// Enqueues one record per message: the priced record, a tombstone, or the message itself to the
/// dead-letter topic with headers naming the error and where it came from. A record the producer
/// refuses for good (larger than `message.max.bytes`, say) is dead-lettered instead; only a dead
/// letter that cannot be written either stops the bridge, before its batch is committed.
async fn enqueue(
    producer: &Producer,
    config: &KafkaConfig,
    batch: &[Message],
    outcomes: &[Outcome],
    in_flight: &Arc<InFlight>,
) -> anyhow::Result<()> {
    for (message, outcome) in batch.iter().zip(outcomes) {
        let key = message.key.as_deref();
        let source = Source::of(message);
        let outgoing = |kind| {
            Box::new(Outgoing {
                batch: in_flight.clone(),
                kind,
                source: source.clone(),
            })
        };
        let sent = match outcome {
            Outcome::Priced { value, .. } => {
                send(
                    producer,
                    record(&config.sink_topic, key, Some(value), outgoing(Delivered::Priced)),
                )
                .await
            }
            Outcome::Tombstone => {
                send(
                    producer,
                    record(&config.sink_topic, key, None, outgoing(Delivered::Tombstone)),
                )
                .await
            }
            Outcome::DeadLetter { kind, error } => {
                let letter = Letter {
                    source: &source,
                    key,
                    value: message.value.as_deref(),
                    kind,
                    error,
                };
                dead_letter(producer, config, letter, in_flight.clone()).await?;
                continue;
            }
        };
        match sent {
            Ok(()) => {}
            Err((e, _)) if permanent(&e) => {
                let letter = Letter {
                    source: &source,
                    key,
                    value: message.value.as_deref(),
                    kind: "unproducible",
                    error: &format!("the priced record cannot be produced: {e}"),
                };
                dead_letter(producer, config, letter, in_flight.clone()).await?;
            }
            Err((e, _)) => return Err(e).context("cannot enqueue a record"),
        }
    }
    Ok(())
}

/// Commits what the acknowledged batches make committable: the partitions this member still owns,
/// where their offsets move forward.
fn commit(consumer: &StreamConsumer<Context>) {
    let ready = consumer.context().ledger().commit_ready();
    // Asynchronous: the records are already acknowledged, and a commit that is lost only means the
    // batch is consumed again (at least once). Shutdown commits synchronously.
    if !ready.is_empty() {
        tracing::debug!(?ready, "committing");
        let committed = offsets(&ready).and_then(|o| Ok(consumer.commit(&o, CommitMode::Async)?));
        if let Err(e) = committed {
            tracing::warn!(error = %e, "commit failed; the batch will be consumed again");
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

fn record<'a>(
    topic: &'a str,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    outgoing: Box<Outgoing>,
) -> BaseRecord<'a, [u8], [u8], Box<Outgoing>> {
    let mut record = BaseRecord::with_opaque_to(topic, outgoing);
    record.key = key;
    record.payload = value;
    record
}

/// A dead letter: the message (or the record refused in its place), why, and where it came from.
struct Letter<'a> {
    source: &'a Source,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    kind: &'a str,
    error: &'a str,
}

/// Enqueues a dead letter with headers naming the error and where its message came from. When the
/// value itself is too large to produce, the dead letter goes without it (the source topic keeps
/// the message, at the partition and offset the headers name).
async fn dead_letter(
    producer: &Producer,
    config: &KafkaConfig,
    letter: Letter<'_>,
    batch: Arc<InFlight>,
) -> anyhow::Result<()> {
    let Letter {
        source,
        key,
        value,
        kind,
        error,
    } = letter;
    tracing::warn!(topic = %source.topic, partition = source.partition, offset = source.offset,
        error_type = %kind, %error, "dead-lettered");
    let partition = source.partition.to_string();
    let offset = source.offset.to_string();
    let headers = OwnedHeaders::new()
        .insert(header(HEADER_ERROR, error))
        .insert(header(HEADER_ERROR_TYPE, kind))
        .insert(header(HEADER_TOPIC, &source.topic))
        .insert(header(HEADER_PARTITION, &partition))
        .insert(header(HEADER_OFFSET, &offset));
    let topic = &config.dead_letter_topic;
    let outgoing = Box::new(Outgoing {
        batch,
        kind: Delivered::DeadLetter(kind.to_owned()),
        source: source.clone(),
    });
    let sent = match send(producer, record(topic, key, value, outgoing).headers(headers.clone())).await {
        Err((e, outgoing)) if permanent(&e) => {
            let headers = headers.insert(header(HEADER_VALUE_OMITTED, &e.to_string()));
            send(producer, record(topic, key, None, outgoing).headers(headers)).await
        }
        other => other,
    };
    sent.map_err(|(e, _)| e)
        .context("cannot write to the dead-letter topic; stopping before the batch is committed")
}

/// Whether the producer or the broker refuses the record for good, whatever is retried.
fn permanent(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::BadMessage
        )
    )
}

/// Enqueues a record, waiting while librdkafka's queue is full. A refused record hands its
/// delivery opaque back, for its dead letter to take its place in the batch.
async fn send(
    producer: &Producer,
    mut record: BaseRecord<'_, [u8], [u8], Box<Outgoing>>,
) -> Result<(), (KafkaError, Box<Outgoing>)> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, back)) => return Err((e, back.delivery_opaque)),
        }
    }
}

/// The batch's changes for the Postgres sink, in order, and the message each comes from; dead
/// letters change nothing.
fn sink_ops(batch: &[Message], outcomes: &[Outcome]) -> (Vec<Op>, Vec<usize>) {
    batch
        .iter()
        .zip(outcomes)
        .enumerate()
        .filter_map(|(i, (message, outcome))| {
            match outcome {
                Outcome::Priced { row, types, .. } => Some(Op::Upsert {
                    row: row.clone(),
                    types: types.clone(),
                    position: (message.partition, message.offset),
                }),
                Outcome::Tombstone => message
                    .key
                    .as_deref()
                    .and_then(debezium::key_fields)
                    .map(|key| Op::Delete {
                        key,
                        position: (message.partition, message.offset),
                    }),
                Outcome::DeadLetter { .. } => None,
            }
            .map(|op| (op, i))
        })
        .unzip()
}

fn offsets(next: &Offsets) -> anyhow::Result<TopicPartitionList> {
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn options(shared: &[(&str, &str)], consumer: &[(&str, &str)], producer: &[(&str, &str)]) -> Options {
        let own = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Options {
            shared: own(shared),
            consumer: own(consumer),
            producer: own(producer),
        }
    }

    #[test]
    fn settings_that_break_at_least_once_are_refused_naming_the_flag_and_key() {
        for (refused, flag, key) in [
            (
                options(&[("enable.auto.commit", "true")], &[], &[]),
                "--kafka-option",
                "enable.auto.commit",
            ),
            (
                options(&[], &[("Enable.Auto.Commit", "TRUE")], &[]),
                "--consumer-option",
                "Enable.Auto.Commit",
            ),
            (options(&[], &[], &[("acks", "1")]), "--producer-option", "acks"),
            (options(&[("acks", "0")], &[], &[]), "--kafka-option", "acks"),
            (
                options(&[], &[], &[("enable.idempotence", "false")]),
                "--producer-option",
                "enable.idempotence",
            ),
            (options(&[], &[("group.id", "x")], &[]), "--consumer-option", "group.id"),
            (
                options(&[], &[], &[("transactional.id", "t")]),
                "--producer-option",
                "transactional.id",
            ),
            (options(&[("", "hunter2")], &[], &[]), "--kafka-option", "takes"),
        ] {
            let message = refused.check().unwrap_err().to_string();
            assert!(message.starts_with(&format!("{flag} {key} ")), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let fine = options(
            &[("security.protocol", "SASL_SSL"), ("acks", "all")],
            &[("enable.auto.commit", "false"), ("session.timeout.ms", "6000")],
            &[("acks", "-1"), ("enable.idempotence", "true"), ("linger.ms", "5")],
        );
        fine.check().unwrap();
        // acks belongs to the producer: the consumer ignores it.
        options(&[], &[("acks", "0")], &[]).check().unwrap();
    }
}
