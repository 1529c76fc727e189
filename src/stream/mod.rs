//! The stream bridge: Debezium change events in, priced records out, nothing lost.
//!
//! - [`debezium`]: the message forms, read and written back;
//! - this file: a batch of messages priced in one engine call, each message ending as a priced
//!   record, a tombstone or a dead letter;
//! - [`remote`]: the optional HTTP backend (`--predict-url`);
//! - [`metrics`]: the bridge's counters and its health and metrics listener;
//! - `kafka` and `pg` (cargo feature `stream`): consuming, producing, committing, and the Postgres sink.

pub mod debezium;
#[cfg(feature = "stream")]
pub mod kafka;
pub mod ledger;
pub mod metrics;
#[cfg(feature = "stream")]
pub mod pg;
pub mod remote;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use serde_json::{Map, Value};

use crate::bundle::Model;
use crate::input::{self, Limits};
use crate::preprocess::InputError;
use debezium::{Change, Members, PriceFormat};

/// One consumed message, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Priced: the message to produce, and (when the bridge keeps rows) the row as written, for the
    /// Postgres sink.
    Priced {
        value: Vec<u8>,
        row: Map<String, Value>,
        /// The row's Connect types, when the message has a schema (the sink creates its table from them).
        types: Option<debezium::RowTypes>,
    },
    /// A delete or tombstone: a tombstone with the same key.
    Tombstone,
    /// Unreadable or unpriceable: to the dead-letter topic with the reason.
    DeadLetter { kind: String, error: String },
}

impl Outcome {
    fn dead(kind: impl Into<String>, error: impl Into<String>) -> Self {
        Outcome::DeadLetter {
            kind: kind.into(),
            error: error.into(),
        }
    }
}

/// Database column names that differ from the model's input names (`fuel_type=fuelType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap(Vec<(String, String)>);

impl ColumnMap {
    /// The seed's table against the model's inputs.
    pub const DEFAULT: &'static str = "fuel_type=fuelType,engine_size=engineSize";

    /// The database's name for a model input.
    pub fn source<'a>(&'a self, input: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(_, model)| model == input)
            .map_or(input, |(db, _)| db.as_str())
    }

    /// The model's name for a database column.
    pub fn target<'a>(&'a self, column: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(db, _)| db == column)
            .map_or(column, |(_, model)| model.as_str())
    }
}

impl std::str::FromStr for ColumnMap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let pairs = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((db, model)) if !db.trim().is_empty() && !model.trim().is_empty() => {
                    Ok((db.trim().to_owned(), model.trim().to_owned()))
                }
                _ => Err(format!("{pair:?} is not `column=input`")),
            })
            .collect::<Result<_, _>>()?;
        Ok(ColumnMap(pairs))
    }
}

/// Where prices come from.
#[derive(Clone)]
pub enum Pricer {
    /// The engine, in this process; SIGHUP swaps in a reloaded model, which the next batch uses.
    Local(Arc<ArcSwap<Model>>),
    /// A `/predict` endpoint: this server or the Bento service.
    Remote(Box<remote::Client>),
}

/// How messages are priced and written.
#[derive(Clone)]
pub struct Bridge {
    pub pricer: Pricer,
    pub columns: ColumnMap,
    /// The payload field that receives the price (`suggested_price`).
    pub price_field: String,
    pub price_format: PriceFormat,
    pub metrics: Arc<metrics::Metrics>,
    /// Schemas rewritten for the price field, once per distinct schema.
    pub schemas: Arc<debezium::Schemas>,
    /// Whether outcomes carry the priced row and its types (for the Postgres sink).
    pub keep_rows: bool,
}

/// A row the pricer refused, by its position among the rows it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// `None` when the refusal names no row; then every row is refused.
    pub row: Option<usize>,
    pub kind: String,
    pub message: String,
}

impl From<InputError> for RowError {
    fn from(e: InputError) -> Self {
        RowError {
            row: e.row,
            kind: e.kind.as_str().to_owned(),
            message: e.message,
        }
    }
}

impl Pricer {
    /// The engine over `model`, to be swapped by [`Pricer::reload`].
    pub fn local(model: Model) -> Self {
        Pricer::Local(Arc::new(ArcSwap::from_pointee(model)))
    }

    /// Loads the local model's bundle again, checks it (digests, parity) and swaps it in for the
    /// batches that follow; a refused bundle leaves the old model pricing. A remote pricer has
    /// nothing to reload.
    pub async fn reload(&self) -> Result<(), crate::bundle::BundleError> {
        let Pricer::Local(model) = self else { return Ok(()) };
        let dir = model.load().dir.clone();
        let loaded = tokio::task::spawn_blocking(move || Model::load(&dir))
            .await
            .unwrap_or_else(|e| {
                Err(crate::bundle::BundleError {
                    path: model.load().dir.clone(),
                    reason: format!("the load task failed: {e}"),
                })
            })?;
        tracing::info!(name = %loaded.manifest.name, version = %loaded.manifest.version,
            digest = %loaded.digest, "reloaded; the next batch is priced with it");
        model.store(Arc::new(loaded));
        Ok(())
    }
}

/// What the pricer made of a batch's rows.
enum Prices {
    /// One price or refusal per row, in order.
    PerRow(Vec<Result<f32, RowError>>),
    /// The batch was refused as a whole, naming at most one row.
    Refused(RowError),
}

impl Bridge {
    /// Prices a batch: every row to price goes to the pricer in one call. The engine finds every row
    /// it refuses in that pass; a remote backend names one refused row at a time, which is
    /// dead-lettered and the rest priced again without it. One outcome per message, in order.
    pub async fn handle(&self, batch: &[Message]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut records = Vec::new();
        let mut decoder = debezium::Decoder::default();
        for (i, message) in batch.iter().enumerate() {
            match decoder.decode(message.value.as_deref()) {
                Ok(Change::Upsert(record)) => records.push(Some((i, record))),
                Ok(Change::Delete) => outcomes[i] = Some(Outcome::Tombstone),
                Err(e) => outcomes[i] = Some(Outcome::dead(e.kind, e.message)),
            }
        }
        // Each record leaves `records` once it has its outcome.
        let mut live: Vec<usize> = (0..records.len()).collect();
        while !live.is_empty() {
            let rows: Vec<&Members> = live
                .iter()
                .map(|&r| records[r].as_ref().expect("live").1.row())
                .collect();
            let started = Instant::now();
            let result = self.price(&rows).await;
            self.metrics.predict_seconds.observe(started.elapsed().as_secs_f64());
            match result {
                Prices::PerRow(prices) => {
                    for (&r, price) in live.iter().zip(prices) {
                        let (i, record) = records[r].take().expect("live");
                        outcomes[i] = Some(match price {
                            Ok(price) => self.priced(record, price),
                            Err(e) => Outcome::dead(e.kind, e.message),
                        });
                    }
                    break;
                }
                Prices::Refused(RowError {
                    row: Some(row),
                    kind,
                    message,
                }) if row < live.len() => {
                    let (i, _) = records[live.remove(row)].take().expect("live");
                    outcomes[i] = Some(Outcome::dead(kind, message));
                }
                Prices::Refused(RowError { kind, message, .. }) => {
                    for r in live.drain(..) {
                        let (i, _) = records[r].take().expect("live");
                        outcomes[i] = Some(Outcome::dead(kind.clone(), message.clone()));
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every message has an outcome"))
            .collect()
    }

    fn priced(&self, record: debezium::Record, price: f32) -> Outcome {
        let Some(value) = self.price_format.value(price) else {
            return Outcome::dead(
                "out_of_range",
                format!("the price {price} does not fit the {:?} format", self.price_format),
            );
        };
        let bytes = match record.to_bytes(&self.price_field, &value, &self.schemas) {
            Ok(bytes) => bytes,
            Err(e) => return Outcome::dead(e.kind, e.message),
        };
        // The row and its types are for the Postgres sink only.
        let (row, types) = if self.keep_rows {
            let mut row = match record.row().to_map() {
                Ok(row) => row,
                Err(e) => return Outcome::dead("json", format!("the row cannot be read: {e}")),
            };
            row.insert(self.price_field.clone(), value);
            (row, record.row_types(&self.schemas))
        } else {
            (Map::new(), None)
        };
        Outcome::Priced {
            value: bytes,
            row,
            types,
        }
    }

    async fn price(&self, rows: &[&Members<'_>]) -> Prices {
        match &self.pricer {
            // The engine's work blocks: off the async workers, so the consumer and the producer
            // keep running beside it.
            Pricer::Local(model) => off_the_async_workers(|| {
                let model = model.load();
                match price_locally(&model, &self.columns, rows, &self.metrics) {
                    Ok(prices) => Prices::PerRow(prices.into_iter().map(Ok).collect()),
                    // Something was refused: price each row alone, which finds every refusal
                    // in one more pass instead of one batch per refused row.
                    Err(_) => Prices::PerRow(
                        rows.iter()
                            .map(|row| {
                                price_locally(&model, &self.columns, std::slice::from_ref(row), &self.metrics)
                                    .map(|prices| prices[0])
                            })
                            .collect(),
                    ),
                }
            }),
            Pricer::Remote(client) => match client.predict(&self.columns, &self.price_field, rows).await {
                Ok(prices) => Prices::PerRow(prices.into_iter().map(Ok).collect()),
                Err(e) => Prices::Refused(e),
            },
        }
    }
}

/// Runs blocking work where it does not hold up the runtime's other tasks: on a multi-threaded
/// runtime (as `xgserve stream` runs), this worker hands its tasks to the others meanwhile; on a
/// current-thread runtime (tests) there is nobody to hand them to, and it simply runs.
fn off_the_async_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Types the rows' columns as the model's inputs and scores them in one engine call.
fn price_locally(
    model: &Model,
    columns: &ColumnMap,
    rows: &[&Members<'_>],
    metrics: &metrics::Metrics,
) -> Result<Vec<f32>, RowError> {
    let inputs = model.preprocessor.inputs();
    let mut values = Vec::with_capacity(inputs.len());
    for input in inputs {
        let source = columns.source(&input.name);
        let mut column = Vec::with_capacity(rows.len());
        for (row, fields) in rows.iter().enumerate() {
            match fields.get(source) {
                Some(value) => column.push(value),
                None => {
                    return Err(RowError {
                        row: Some(row),
                        kind: "missing_column".into(),
                        message: format!("column {source:?} (model input {:?}) is missing", input.name),
                    })
                }
            }
        }
        values.push((input.name.as_str(), column));
    }
    let limits = Limits { max_rows: usize::MAX };
    let batch = input::decode_raw(inputs, limits, values).map_err(|e| named(e, columns))?;
    let mut unknown = vec![0; inputs.len()];
    let prices = model
        .predict_counting(&batch, &mut unknown)
        .map_err(|e| named(e, columns))?;
    metrics.count_unknown(inputs, &unknown);
    Ok(prices)
}

/// An input error that names the database's column, as the message carries it.
fn named(e: InputError, columns: &ColumnMap) -> RowError {
    let source = e
        .column
        .as_deref()
        .map(|input| columns.source(input))
        .filter(|s| Some(*s) != e.column.as_deref());
    let suffix = source.map(|s| format!(" (database column {s:?})")).unwrap_or_default();
    let mut error = RowError::from(e);
    error.message.push_str(&suffix);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_maps_parse_and_translate_both_ways() {
        let map: ColumnMap = ColumnMap::DEFAULT.parse().unwrap();
        assert_eq!(map.source("fuelType"), "fuel_type");
        assert_eq!(map.source("year"), "year");
        assert_eq!(map.target("engine_size"), "engineSize");
        assert_eq!(map.target("mpg"), "mpg");
        assert_eq!("".parse::<ColumnMap>(), Ok(ColumnMap(vec![])));
        assert!("fuel_type".parse::<ColumnMap>().unwrap_err().contains("fuel_type"));
        assert!("=x".parse::<ColumnMap>().is_err());
    }
}
