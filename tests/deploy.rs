//! The operators' files (`deploy/`, `Dockerfile`) agree with the server's and the bridge's defaults:
//! topic names, table and column names, ports. No Docker engine runs here, so this is what keeps the
//! compose file and the connector configs honest.

mod common;

use clap::Parser;
use serde_json::Value;
use xgserve::bundle::Model;
use xgserve::cli::{Cli, Command, ServeArgs, StreamArgs};

fn read(path: &str) -> String {
    std::fs::read_to_string(common::repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn connector(path: &str) -> Value {
    serde_json::from_str::<Value>(&read(path)).unwrap()["config"].clone()
}

fn stream_defaults() -> StreamArgs {
    match Cli::try_parse_from(["xgserve", "stream"]).unwrap().command {
        Some(Command::Stream(args)) => *args,
        other => panic!("{other:?}"),
    }
}

fn serve_defaults() -> ServeArgs {
    match Cli::try_parse_from(["xgserve", "serve"]).unwrap().command {
        Some(Command::Serve(args)) => args,
        other => panic!("{other:?}"),
    }
}

/// The seed table's columns, lower-cased as Postgres stores them.
fn table_columns() -> Vec<String> {
    let sql = read("deploy/init.sql");
    let body = &sql[sql.find('(').unwrap() + 1..sql.rfind(')').unwrap()];
    body.split(',')
        .map(|c| c.split_whitespace().next().unwrap().to_lowercase())
        .collect()
}

#[test]
fn the_debezium_source_publishes_where_the_bridge_reads() {
    let source = connector("deploy/connect/debezium-postgres.json");
    let topic = format!(
        "{}.{}",
        source["topic.prefix"].as_str().unwrap(),
        source["table.include.list"].as_str().unwrap()
    );
    assert_eq!(vec![topic], stream_defaults().source_topics);
    assert_eq!(source["plugin.name"], "pgoutput");
    assert_eq!(
        source["transforms.unwrap.type"],
        "io.debezium.transforms.ExtractNewRecordState"
    );
    assert_eq!(source["value.converter"], "org.apache.kafka.connect.json.JsonConverter");
    assert_eq!(source["value.converter.schemas.enable"], "true");
    assert!(
        source.get("database.server.name").is_none(),
        "Debezium 2.x uses topic.prefix"
    );
    let compose = read("deploy/docker-compose.yml");
    let database = source["database.dbname"].as_str().unwrap();
    assert!(compose.contains(&format!("POSTGRES_DB: {database}")));
    assert!(compose.contains("wal_level=logical"));
}

#[test]
fn the_jdbc_sink_reads_what_the_bridge_writes_and_upserts_by_its_key() {
    let sink = connector("deploy/connect/jdbc-sink.json");
    let defaults = stream_defaults();
    assert_eq!(sink["topics"], defaults.sink_topic.as_str());
    assert_eq!(sink["table.name.format"], defaults.pg_table.as_str());
    assert_eq!(sink["primary.key.fields"], defaults.pg_key.as_str());
    assert_eq!(sink["primary.key.mode"], "record_key");
    assert_eq!(sink["insert.mode"], "upsert");
    assert_eq!(
        sink["delete.enabled"], "true",
        "the bridge forwards deletes as tombstones"
    );
    assert!(sink["connection.url"].as_str().unwrap().ends_with("/car_database"));
    for file in ["deploy/connect/jdbc-sink.json", "deploy/connect/debezium-postgres.json"] {
        assert!(
            read(file).contains("${env:POSTGRES_PASSWORD}"),
            "{file} holds no password"
        );
    }
}

#[test]
fn the_seed_table_has_a_column_for_every_model_input_and_the_price() {
    let columns = table_columns();
    assert_eq!(columns.len(), 11, "{columns:?}");
    let defaults = stream_defaults();
    let model = Model::load(common::shipped_bundle()).unwrap();
    for input in model.preprocessor.inputs() {
        let column = defaults.column_map.source(&input.name).to_lowercase();
        assert!(
            columns.contains(&column),
            "model input {:?} has no column {column:?}",
            input.name
        );
    }
    assert!(columns.contains(&defaults.price_field));
    assert!(columns.contains(&defaults.pg_key));
}

#[test]
fn ports_and_brokers_agree_with_the_defaults() {
    let compose = read("deploy/docker-compose.yml");
    let serve = serve_defaults().port;
    let metrics = stream_defaults().metrics_port;
    assert!(
        compose.contains(&format!("\"{serve}:{serve}\"")),
        "the server's port {serve}"
    );
    assert!(
        compose.contains(&format!("\"{metrics}:{metrics}\"")),
        "the bridge's port {metrics}"
    );
    assert!(
        compose.contains(&format!("http://127.0.0.1:{metrics}/readyz")),
        "the bridge's health check"
    );
    assert!(compose.contains("XGSERVE_BROKERS: kafka:9092"));
    assert!(compose.contains("KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:9092"));
    let dockerfile = read("Dockerfile");
    let grpc = serve_defaults().grpc_port;
    assert!(dockerfile.contains(&format!("EXPOSE {serve} {grpc} {metrics}")));
    assert!(dockerfile.contains("--features stream"), "the image carries the bridge");
    let connect = ["debezium-postgres.json", "jdbc-sink.json"];
    for file in connect {
        assert!(
            compose.contains(&format!("/connect/{file}")),
            "compose registers {file}"
        );
    }
}

#[test]
fn the_image_runs_as_a_non_root_user_with_a_healthcheck() {
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = runtime
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap().trim();
    assert!(uid != "0" && uid != "root", "the runtime stage runs as {user}");
    assert!(
        runtime.contains("HEALTHCHECK") && runtime.contains("\"healthcheck\""),
        "{runtime}"
    );
}

/// The Kubernetes version the manifests are validated against (its schemas ship offline in the
/// pinned kubernetes-validate, `tests/kubernetes/requirements.txt`).
const KUBERNETES: &str = "1.33.0";

/// `deploy/kubernetes/` validates strictly against Kubernetes' schemas and agrees with the server's
/// and the bridge's flags (`tests/kubernetes/check.py` says what it checks).
#[test]
fn the_kubernetes_manifests_are_valid_and_agree_with_the_flags() {
    use clap::CommandFactory;
    let serve = serve_defaults();
    let stream = stream_defaults();
    let cli = Cli::command();
    let variables: Vec<String> = ["serve", "stream"]
        .iter()
        .flat_map(|name| cli.find_subcommand(name).unwrap().get_arguments())
        .filter_map(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
        .collect();
    let expected = serde_json::json!({
        "server_ports": [serve.port, serve.grpc_port],
        "bridge_port": stream.metrics_port,
        "shutdown_delay_ms": serve.shutdown_delay_ms,
        "shutdown_grace_seconds": serve.shutdown_grace_seconds,
        // On SIGTERM the batch in hand finishes (a backend call and its retry, then the commit),
        // then the bridge leaves the group (at most 10 s, `kafka::leave`).
        "bridge_drain_seconds": 2 * stream.predict_timeout_ms / 1000 + 5 + 10,
        "variables": variables,
    });
    let run = std::process::Command::new(common::process::venv_bin("python"))
        .arg(common::repo().join("tests/kubernetes/check.py"))
        .args([KUBERNETES, &common::repo().join("deploy/kubernetes").to_string_lossy()])
        .arg(expected.to_string())
        .output()
        .expect("python (tests/run makes .venv)");
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Seven objects, each valid, then the four agreement checks.
    assert_eq!(
        report
            .lines()
            .filter(|l| l.contains(" is valid for Kubernetes "))
            .count(),
        7,
        "{report}"
    );
    assert_eq!(report.lines().count(), 11, "{report}");
}
