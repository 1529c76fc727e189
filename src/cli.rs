//! Command-line arguments. Every flag has an environment variable and a default; `--help` prints the
//! doc comments below.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The default bundle, shipped in this repository.
pub const DEFAULT_MODEL_DIR: &str = "models/ford_used_car_price";

#[derive(Debug, Parser)]
#[command(
    name = "xgserve",
    version,
    about = "Serves XGBoost bundles with predictions identical to the Python pipeline"
)]
pub struct Cli {
    /// What to do; `serve` when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the bundle over HTTP (the default).
    Serve(ServeArgs),
    /// Score a CSV or JSON file offline and print the predictions as a JSON array.
    Predict(PredictArgs),
    /// Write the OpenAPI document of the server for a bundle (what /docs.json serves).
    Openapi {
        /// The bundle folder.
        #[arg(long, env = "XGSERVE_MODEL_DIR", default_value = DEFAULT_MODEL_DIR)]
        model: PathBuf,
        /// Where to write it.
        #[arg(long, default_value = "openapi/openapi.json")]
        output: PathBuf,
    },
    /// Exit 0 when the server answers 200 on its readiness route (for container health checks;
    /// needs no curl in the image).
    Healthcheck {
        /// Where the server listens.
        #[arg(
            long,
            env = "XGSERVE_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:3000/readyz"
        )]
        url: String,
    },
    /// Inspect the bundles in a folder.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Price Debezium change events from Kafka and produce them for the JDBC sink (needs the cargo
    /// feature `stream`).
    Stream(Box<StreamArgs>),
}

#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "XGSERVE_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Consumer group; offsets are committed for it after each batch is acknowledged.
    #[arg(long, env = "XGSERVE_GROUP_ID", default_value = "xgserve-stream")]
    pub group_id: String,
    /// Topics of Debezium change events, comma-separated.
    #[arg(
        long,
        env = "XGSERVE_SOURCE_TOPICS",
        value_delimiter = ',',
        default_value = "car_database.public.tbl_car_price"
    )]
    pub source_topics: Vec<String>,
    /// Where priced records (and tombstones for deletes) go, keyed as they came.
    #[arg(long, env = "XGSERVE_SINK_TOPIC", default_value = "car_data_predicted")]
    pub sink_topic: String,
    /// Where messages that cannot be read or priced go, with headers naming the error and source.
    #[arg(long, env = "XGSERVE_DEAD_LETTER_TOPIC", default_value = "car_data_predicted.dlq")]
    pub dead_letter_topic: String,
    /// The bundle folder (in-process pricing).
    #[arg(long, env = "XGSERVE_MODEL_DIR", default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// Database columns named differently from the model's inputs, as `column=input` pairs.
    #[arg(long, env = "XGSERVE_COLUMN_MAP", default_value = crate::stream::ColumnMap::DEFAULT)]
    pub column_map: crate::stream::ColumnMap,
    /// The payload field that receives the price.
    #[arg(long, env = "XGSERVE_PRICE_FIELD", default_value = "suggested_price")]
    pub price_field: String,
    /// `integer`: rounded (ties to even) for the seed table's INTEGER column; `float`: the exact
    /// float32 prediction, as /predict answers it.
    #[arg(long, env = "XGSERVE_PRICE_FORMAT", value_enum, default_value = "integer")]
    pub price_format: crate::stream::debezium::PriceFormat,
    /// Most messages priced in one engine call.
    #[arg(long, env = "XGSERVE_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Batches produced and not yet all acknowledged, at most: the next batch is consumed and priced
    /// while these are on their way. 1 waits for every batch's acknowledgements before the next.
    #[arg(long, env = "XGSERVE_BATCHES_IN_FLIGHT", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub batches_in_flight: u16,
    /// Milliseconds a batch waits for more messages after its first.
    #[arg(long, env = "XGSERVE_BATCH_LINGER_MS", default_value_t = 5)]
    pub batch_linger_ms: u64,
    /// Milliseconds to let the records in flight land when partitions are taken away, before they
    /// are released to their next owner; what has not landed by then is left uncommitted for it.
    #[arg(long, env = "XGSERVE_HANDOVER_TIMEOUT_MS", default_value_t = 10_000)]
    pub handover_timeout_ms: u64,
    /// Price through this `/predict` URL instead of in process (this server or the Bento service).
    #[arg(long, env = "XGSERVE_PREDICT_URL")]
    pub predict_url: Option<String>,
    /// Milliseconds per call to --predict-url before it is retried.
    #[arg(long, env = "XGSERVE_PREDICT_TIMEOUT_MS", default_value_t = 5_000)]
    pub predict_timeout_ms: u64,
    /// Bearer token for --predict-url.
    #[arg(long, env = "XGSERVE_PREDICT_TOKEN")]
    pub predict_token: Option<Secret>,
    /// Also upsert priced rows into Postgres (a libpq URL or key=value string), for deployments
    /// without Kafka Connect.
    #[arg(long, env = "XGSERVE_PG_SINK")]
    pub pg_sink: Option<Secret>,
    /// The --pg-sink table; created from the first record's schema if missing.
    #[arg(long, env = "XGSERVE_PG_TABLE", default_value = "car_data_predicted")]
    pub pg_table: String,
    /// The --pg-sink table's key column, upserted on.
    #[arg(long, env = "XGSERVE_PG_KEY", default_value = "id")]
    pub pg_key: String,
    /// A librdkafka setting for the consumer and the producer, `key=value` (security.protocol,
    /// sasl.*, ...); repeat the flag for more, values may hold commas (one per line in the env var).
    /// Settings that would break at-least-once delivery are refused; secret values are never logged.
    #[arg(long, env = "XGSERVE_KAFKA_OPTIONS", value_delimiter = '\n')]
    pub kafka_option: Vec<KafkaOption>,
    /// A librdkafka setting for the consumer alone, as --kafka-option.
    #[arg(long, env = "XGSERVE_CONSUMER_OPTIONS", value_delimiter = '\n')]
    pub consumer_option: Vec<KafkaOption>,
    /// A librdkafka setting for the producer alone, as --kafka-option.
    #[arg(long, env = "XGSERVE_PRODUCER_OPTIONS", value_delimiter = '\n')]
    pub producer_option: Vec<KafkaOption>,
    /// Address of the health and metrics listener (/livez, /readyz, /metrics).
    #[arg(long, env = "XGSERVE_METRICS_HOST", default_value = "0.0.0.0")]
    pub metrics_host: String,
    /// Port of the health and metrics listener; 0 picks a free one.
    #[arg(long, env = "XGSERVE_METRICS_PORT", default_value_t = 3001)]
    pub metrics_port: u16,
    /// Log lines as `text` or `json`; filter with RUST_LOG.
    #[arg(long, env = "XGSERVE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The bundle folder.
    #[arg(long, env = "XGSERVE_MODEL_DIR", default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// Cars to score: `.csv` with a header row (read a chunk at a time, so of any size), or
    /// `.json` (columnar or a list of records, read whole).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the predictions, in the format its extension says (`.csv`, else a JSON
    /// array); standard output (JSON) when absent.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Threads that score a CSV input's chunks; 0 means one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar (there is none anyway when standard error is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Write each CSV row that cannot be scored here (its row, the reason, its fields) and go on;
    /// without it the first such row stops the run with a non-zero exit.
    #[arg(long, conflicts_with_all = ["features", "explain"])]
    pub rejects: Option<PathBuf>,
    /// Write each CSV row's fields (every column of the input) before its prediction; needs a
    /// `.csv` output.
    #[arg(long, conflicts_with_all = ["features", "explain"])]
    pub keep_columns: bool,
    /// Write the preprocessed feature matrix (one list per row) instead of predictions, to compare
    /// with the Python ColumnTransformer's output.
    #[arg(long, conflicts_with = "explain")]
    pub features: bool,
    /// Write each car's prediction, base value and exact contributions (TreeSHAP) instead of the
    /// bare predictions: one row per car.
    #[arg(long)]
    pub explain: bool,
    /// What `--explain` attributes to: the input `column`s, or the model's `feature`s.
    #[arg(long, value_parser = ["column", "feature"], default_value = "column", requires = "explain")]
    pub explain_by: String,
    /// `--explain`'s format: `csv` or `json`; by default CSV when `--output` ends in `.csv`, else
    /// JSON.
    #[arg(long, value_parser = ["csv", "json"], requires = "explain")]
    pub format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the bundles: name, version, size and creation time.
    List {
        /// The folder holding one bundle per subfolder.
        #[arg(long, env = "XGSERVE_MODELS", default_value = "models")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "XGSERVE_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (Bento's).
    #[arg(long, env = "XGSERVE_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Port of the Open Inference Protocol's gRPC service (Triton's); 0 takes any free port, which
    /// the "ready" log line names.
    #[arg(long, env = "XGSERVE_GRPC_PORT", default_value_t = 8001)]
    pub grpc_port: u16,
    /// The bundle folder.
    #[arg(long, env = "XGSERVE_MODEL_DIR", default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// The name the model is served under in the v2 and gRPC routes, instead of the bundle's
    /// (KServe names it after the InferenceService).
    #[arg(long, env = "XGSERVE_MODEL_NAME")]
    pub model_name: Option<String>,
    /// Most rows accepted in one request; more is refused with 413.
    #[arg(long, env = "XGSERVE_MAX_ROWS", default_value_t = 10_000)]
    pub max_rows: usize,
    /// Largest request body in bytes; larger is refused with 413.
    #[arg(long, env = "XGSERVE_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Predictions served at once; more are refused at once with 503 and Retry-After.
    #[arg(long, env = "XGSERVE_MAX_CONCURRENCY", default_value_t = 256)]
    pub max_concurrency: usize,
    /// A prediction taking longer than this many milliseconds is abandoned with 503.
    #[arg(long, env = "XGSERVE_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Milliseconds a client has to send a request's line and headers, counted from the connection's
    /// start or the end of the previous answer; the connection is closed after that. So a client
    /// trickling its headers cannot hold a connection, and an idle keep-alive connection closes
    /// after this long. 0 waits forever.
    #[arg(long, env = "XGSERVE_HEADER_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub header_read_timeout_ms: u64,
    /// Bearer token required by /predict, v2 infer and /admin/reload (which is off without one).
    #[arg(long, env = "XGSERVE_API_KEY")]
    pub api_key: Option<Secret>,
    /// Origins allowed by CORS, comma-separated; CORS is off when empty.
    #[arg(long, env = "XGSERVE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Milliseconds to go on serving after SIGTERM, not ready and closing each connection after its
    /// answer, before the listener closes: for load balancers to stop sending, and for requests
    /// already on their way to arrive rather than be cut off.
    #[arg(long, env = "XGSERVE_SHUTDOWN_DELAY_MS", default_value_t = 1000)]
    pub shutdown_delay_ms: u64,
    /// Seconds to finish requests in flight once the listener has closed, before exiting anyway.
    #[arg(long, env = "XGSERVE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Log lines as `text` or `json`; filter with RUST_LOG.
    #[arg(long, env = "XGSERVE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Threads serving connections, each connection staying on one; 0 is one per core. Large
    /// batches (over 256 rows) are scored on a separate blocking pool.
    #[arg(long, env = "XGSERVE_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Bind each worker to a core of its own, when there are as many workers as cores this process
    /// may run on (its CPU affinity). `false` leaves their placement to the kernel, say on cores
    /// shared with other busy work.
    #[arg(long, env = "XGSERVE_PIN_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub pin_workers: bool,
    /// The time slice, in µs, each worker asks of Linux's scheduler (EEVDF, 6.12 and later): a
    /// request wakes its worker and the worker runs at once, instead of waiting out a longer slice
    /// of whatever else holds the core. The kernel clamps it to 100-100,000; 0 keeps the kernel's.
    #[arg(long, env = "XGSERVE_WORKER_SLICE_US", default_value_t = 100)]
    pub worker_slice_us: u64,
}

/// A value that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A librdkafka setting, `key=value`; `Debug` hides the value of a secret key (passwords, JAAS
/// configs, keys, tokens), so the logged configuration never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOption {
    pub key: String,
    pub value: String,
}

impl KafkaOption {
    /// Whether the key names a secret: any `*password*`, `*secret*`, `sasl.jaas.config`,
    /// `ssl.key.*`, `*private*`, `*token*` or `*credentials*` setting.
    pub fn is_secret(&self) -> bool {
        let key = self.key.to_ascii_lowercase();
        [
            "password",
            "secret",
            "jaas",
            "ssl.key",
            "private",
            "token",
            "credentials",
        ]
        .iter()
        .any(|word| key.contains(word))
    }
}

impl std::fmt::Debug for KafkaOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str("<not key=value, redacted>")
        } else if self.is_secret() {
            write!(f, "{}=<redacted>", self.key)
        } else {
            write!(f, "{}={}", self.key, self.value)
        }
    }
}

/// Never fails: text that is not `key=value` gets an empty key, which the bridge refuses at start
/// without echoing it (clap would print a refused value, and it may be a secret missing its key).
impl std::str::FromStr for KafkaOption {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s.split_once('=').unwrap_or(("", s));
        Ok(KafkaOption {
            key: key.trim().to_owned(),
            value: value.trim().to_owned(),
        })
    }
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self::parse_from_env_defaults()
    }
}

impl ServeArgs {
    /// The defaults, with environment variables applied, as when no subcommand is given.
    fn parse_from_env_defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(["xgserve"]).args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(args: &[&str]) -> Result<StreamArgs, clap::Error> {
        let cli = Cli::try_parse_from(["xgserve", "stream"].iter().chain(args))?;
        match cli.command {
            Some(Command::Stream(args)) => Ok(*args),
            other => panic!("not the stream command: {other:?}"),
        }
    }

    /// The bridge's defaults, as the README states them.
    #[test]
    fn the_bridge_defaults_are_the_documented_ones() {
        let args = stream(&[]).unwrap();
        assert_eq!(args.source_topics, ["car_database.public.tbl_car_price"]);
        assert_eq!(args.sink_topic, "car_data_predicted");
        assert_eq!(args.dead_letter_topic, "car_data_predicted.dlq");
        assert_eq!(args.price_field, "suggested_price");
        assert_eq!(args.price_format, crate::stream::debezium::PriceFormat::Integer);
        assert_eq!(args.column_map, crate::stream::ColumnMap::DEFAULT.parse().unwrap());
        assert_eq!(args.max_batch, 1000);
        assert_eq!(args.batches_in_flight, 8);
        assert_eq!(args.batch_linger_ms, 5);
        assert_eq!(args.handover_timeout_ms, 10_000);
    }

    #[test]
    fn kafka_options_repeat_keep_commas_and_hide_secrets() {
        let args = stream(&[
            "--kafka-option",
            "sasl.jaas.config=a b=\"c,d\";",
            "--kafka-option",
            "security.protocol=SASL_SSL",
            "--consumer-option",
            "sasl.password=hunter2",
            "--producer-option",
            "linger.ms=5",
        ])
        .unwrap();
        assert_eq!(args.kafka_option[0].value, "a b=\"c,d\";");
        assert_eq!(args.kafka_option.len(), 2);
        assert_eq!(args.consumer_option[0].key, "sasl.password");
        assert_eq!(args.producer_option[0].value, "5");
        let logged = format!("{args:?}");
        assert!(!logged.contains("hunter2") && !logged.contains("c,d"), "{logged}");
        assert!(logged.contains("sasl.password=<redacted>") && logged.contains("security.protocol=SASL_SSL"));
        let unkeyed = stream(&["--kafka-option", "hunter2"]).unwrap();
        assert!(unkeyed.kafka_option[0].key.is_empty());
        assert!(!format!("{unkeyed:?}").contains("hunter2"));
    }

    /// The server's defaults, as the README's configuration table states them.
    #[test]
    fn the_server_defaults_are_the_documented_ones() {
        let cli = Cli::try_parse_from(["xgserve", "serve"]).unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("not the serve command");
        };
        assert_eq!((args.host.as_str(), args.port, args.grpc_port), ("0.0.0.0", 3000, 8001));
        assert_eq!(args.model_name, None);
        assert_eq!(args.model, PathBuf::from(DEFAULT_MODEL_DIR));
        assert_eq!((args.max_rows, args.max_body_bytes), (10_000, 8 * 1024 * 1024));
        assert_eq!((args.max_concurrency, args.request_timeout_ms), (256, 10_000));
        assert_eq!(args.header_read_timeout_ms, 30_000);
        assert_eq!(args.api_key, None);
        assert!(args.cors_origins.is_empty());
        assert_eq!((args.shutdown_delay_ms, args.shutdown_grace_seconds), (1000, 30));
        assert_eq!(args.log_format, "text");
        assert_eq!(args.workers, 0);
        assert!(args.pin_workers);
        assert_eq!(args.worker_slice_us, 100);
    }

    #[test]
    fn at_least_one_batch_is_in_flight() {
        assert_eq!(stream(&["--batches-in-flight", "1"]).unwrap().batches_in_flight, 1);
        let refused = stream(&["--batches-in-flight", "0"]).unwrap_err();
        assert!(refused.to_string().contains("batches-in-flight"), "{refused}");
    }
}
