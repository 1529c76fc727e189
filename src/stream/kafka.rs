//! Kafka: consume a batch, price it, produce the priced records, tombstones and dead letters, wait
//! until the broker has acknowledged every one (and the Postgres sink has committed), and only then
//! commit the batch's offsets. A crash anywhere before the commit re-prices and re-sends the batch on
//! restart: at least once, never lost. The producer is idempotent, so its own retries add no copies.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

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

/// A batch whose records are enqueued: the deliveries to wait for, and the offsets to commit after.
struct Pending {
    /// Not yet acknowledged, in order.
    deliveries: VecDeque<(DeliveryFuture, Delivered)>,
    /// The batch in the ledger, which knows its offsets.
    id: BatchId,
    started: Instant,
}

/// What a delivered record counts as.
enum Delivered {
    Priced,
    Tombstone,
    DeadLetter(String),
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

/// Reads librdkafka's statistics into the lag gauge and logs rebalances.
struct Context {
    metrics: Arc<Metrics>,
    /// The delivery state, shared with the loop: the rebalance callbacks run inside `recv`.
    ledger: Arc<Mutex<Ledger>>,
}

impl Context {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // The ledger's methods do not panic midway; a poisoned lock still holds a whole state.
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// Before partitions go: commit what is acknowledged for them, and forget the rest, which
    /// their next owner consumes again (at least once). Nothing is committed for them afterwards.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance) {
        let Rebalance::Revoke(list) = rebalance else { return };
        let revoked = partitions(list);
        let last = self.ledger().revoke(revoked.clone());
        self.metrics.rebalances.inc();
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
        tracing::info!(?revoked, committed = ?last, "partitions revoked");
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                self.ledger().assign(assigned.clone());
                tracing::info!(?assigned, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
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

/// Runs the bridge until `shutdown` resolves, then finishes the batch in hand, commits and returns.
pub async fn run(
    config: KafkaConfig,
    bridge: Bridge,
    mut sink: Option<Sink>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = bridge.metrics.clone();
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
        ledger: Arc::new(Mutex::new(Ledger::default())),
    })
    .map_err(|e| creation_error("consumer", e))?;
    let topics: Vec<&str> = config.source_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("cannot subscribe")?;
    let producer: FutureProducer = client_config(
        &config,
        &[("enable.idempotence", "true"), ("acks", "all"), ("linger.ms", "1")],
        &config.options.producer,
    )
    .create()
    .map_err(|e| creation_error("producer", e))?;
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

    tokio::pin!(shutdown);
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    loop {
        // While waiting for the next message, settle the batches in flight, so an idle stream
        // still commits (and counts) what was delivered.
        let first = loop {
            let Some(front) = in_flight.front_mut() else {
                break tokio::select! {
                    biased;
                    () = &mut shutdown => None,
                    message = consumer.recv() => Some(message),
                };
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break None,
                acknowledged = front.acknowledged(&metrics) => {
                    acknowledged?;
                    let batch = in_flight.pop_front().expect("not empty");
                    commit(&consumer, batch, &metrics);
                }
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
        let id = consumer
            .context()
            .ledger()
            .consumed(batch.iter().map(|m| ((m.topic.clone(), m.partition), m.offset)));
        in_flight.push_back(enqueue(&producer, &config, &batch, &outcomes, started, id).await?);
        // The next batch is fetched and priced while this one's records are on their way; batches
        // are committed in order, each once all its records are acknowledged.
        while in_flight.len() >= config.batches_in_flight.max(1) {
            let mut batch = in_flight.pop_front().expect("not empty");
            batch.acknowledged(&metrics).await?;
            commit(&consumer, batch, &metrics);
        }
    }
    for mut batch in in_flight {
        batch.acknowledged(&metrics).await?;
        commit(&consumer, batch, &metrics);
    }
    metrics.ready.store(false, Ordering::Relaxed);
    // The commits so far were asynchronous: make the last ones sure, for the partitions still owned.
    let last = consumer.context().ledger().owned_commits();
    if !last.is_empty() {
        if let Err(e) = consumer.commit(&offsets(&last)?, CommitMode::Sync) {
            tracing::warn!(error = %e, "the final commit failed; the last batch will be consumed again");
        }
    }
    tracing::info!("stopped consuming; every priced batch is committed");
    Ok(())
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

/// Enqueues one record per message: the priced record, a tombstone, or the message itself to the
/// dead-letter topic with headers naming the error and where it came from. A record the producer
/// refuses for good (larger than `message.max.bytes`, say) is dead-lettered instead; only a dead
/// letter that cannot be written either stops the bridge, before its batch is committed.
async fn enqueue(
    producer: &FutureProducer,
    config: &KafkaConfig,
    batch: &[Message],
    outcomes: &[Outcome],
    started: Instant,
    id: BatchId,
) -> anyhow::Result<Pending> {
    let mut deliveries = VecDeque::with_capacity(batch.len());
    for (message, outcome) in batch.iter().zip(outcomes) {
        let key = message.key.as_deref();
        let sent = match outcome {
            Outcome::Priced { value, .. } => send(producer, record(&config.sink_topic, key, Some(value)))
                .await
                .map(|sent| (sent, Delivered::Priced)),
            Outcome::Tombstone => send(producer, record(&config.sink_topic, key, None))
                .await
                .map(|sent| (sent, Delivered::Tombstone)),
            Outcome::DeadLetter { kind, error } => Ok(dead_letter(producer, config, message, kind, error).await?),
        };
        let delivery = match sent {
            Ok(delivery) => delivery,
            Err(e) if permanent(&e) => {
                let error = format!("the priced record cannot be produced: {e}");
                dead_letter(producer, config, message, "unproducible", &error).await?
            }
            Err(e) => return Err(e).context("cannot enqueue a record"),
        };
        deliveries.push_back(delivery);
    }
    Ok(Pending {
        deliveries,
        id,
        started,
    })
}

impl Pending {
    /// Waits for the batch's acknowledgements, counting each. Safe to cancel and call again: what
    /// was counted is gone from the batch. A record the broker does not take (after librdkafka's own
    /// retries) fails the bridge before its batch is committed: the batch is consumed again.
    async fn acknowledged(&mut self, metrics: &Metrics) -> anyhow::Result<()> {
        while let Some((delivery, _)) = self.deliveries.front_mut() {
            let stored = match delivery.await {
                Ok(Ok(stored)) => stored,
                Ok(Err((e, _))) => {
                    return Err(e).context("the broker did not take a record; the batch is not committed")
                }
                Err(_) => anyhow::bail!("the producer went away; the batch is not committed"),
            };
            let (_, delivered) = self.deliveries.pop_front().expect("not empty");
            // Where the broker says it stored the record: with this module's log at debug, a record
            // missing from a topic can be told from one never sent.
            tracing::debug!(
                sink = !matches!(delivered, Delivered::DeadLetter(_)),
                partition = stored.partition,
                offset = stored.offset,
                "acknowledged"
            );
            match delivered {
                Delivered::Priced => metrics.produced.inc(),
                Delivered::Tombstone => metrics.tombstones.inc(),
                Delivered::DeadLetter(kind) => metrics.dead_letter(&kind),
            }
        }
        Ok(())
    }
}

/// Notes an acknowledged batch in the ledger and commits what that makes committable: the
/// partitions this member still owns, where their offsets move forward.
fn commit(consumer: &StreamConsumer<Context>, batch: Pending, metrics: &Metrics) {
    debug_assert!(batch.deliveries.is_empty());
    let ready = {
        let mut ledger = consumer.context().ledger();
        ledger.acknowledged(batch.id);
        ledger.commit_ready()
    };
    // Asynchronous: the records are already acknowledged, and a commit that is lost only means the
    // batch is consumed again (at least once). Shutdown commits synchronously.
    if !ready.is_empty() {
        let committed = offsets(&ready).and_then(|o| Ok(consumer.commit(&o, CommitMode::Async)?));
        if let Err(e) = committed {
            tracing::warn!(error = %e, "commit failed; the batch will be consumed again");
        }
    }
    metrics.batch_seconds.observe(batch.started.elapsed().as_secs_f64());
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

fn record<'a>(topic: &'a str, key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> FutureRecord<'a, [u8], [u8]> {
    let mut record = FutureRecord::to(topic);
    record.key = key;
    record.payload = value;
    record
}

/// Enqueues the message to the dead-letter topic with headers naming the error and where it came
/// from. When the message itself is too large to produce, the dead letter goes without its value
/// (the source topic keeps it, at the partition and offset the headers name).
async fn dead_letter(
    producer: &FutureProducer,
    config: &KafkaConfig,
    message: &Message,
    kind: &str,
    error: &str,
) -> anyhow::Result<(DeliveryFuture, Delivered)> {
    tracing::warn!(topic = %message.topic, partition = message.partition, offset = message.offset,
        error_type = %kind, %error, "dead-lettered");
    let partition = message.partition.to_string();
    let offset = message.offset.to_string();
    let headers = OwnedHeaders::new()
        .insert(header(HEADER_ERROR, error))
        .insert(header(HEADER_ERROR_TYPE, kind))
        .insert(header(HEADER_TOPIC, &message.topic))
        .insert(header(HEADER_PARTITION, &partition))
        .insert(header(HEADER_OFFSET, &offset));
    let key = message.key.as_deref();
    let topic = &config.dead_letter_topic;
    let sent = match send(
        producer,
        record(topic, key, message.value.as_deref()).headers(headers.clone()),
    )
    .await
    {
        Err(e) if permanent(&e) => {
            let headers = headers.insert(header(HEADER_VALUE_OMITTED, &e.to_string()));
            send(producer, record(topic, key, None).headers(headers)).await
        }
        other => other,
    };
    let sent = sent.context("cannot write to the dead-letter topic; stopping before the batch is committed")?;
    Ok((sent, Delivered::DeadLetter(kind.to_owned())))
}

/// Whether the producer refuses the record for good, whatever is retried.
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

/// Enqueues a record, waiting while librdkafka's queue is full.
async fn send(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
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
