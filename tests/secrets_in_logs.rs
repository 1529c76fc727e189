//! No secret given to `serve` or `stream` appears in any line they log, at DEBUG, whether they run
//! or refuse to start: the token, the Postgres sink's password, the remote backend's token, and
//! Kafka passwords and JAAS configs (shared, consumer or producer options, or an option missing
//! its key).

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{free_port, http_exchange, start_server, terminate, Process};

const SECRETS: [&str; 8] = [
    "api-key-s3cret",
    "pg-pa55word",
    "predict-t0ken",
    "kafka-pa55word",
    "consumer-pa55word",
    "producer-pa55word",
    "jaas-pa55word",
    "unkeyed-s3cret",
];

fn assert_clean(what: &str, log: &std::path::Path) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        text.contains("effective configuration"),
        "{what} logged no configuration:\n{text}"
    );
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} logged {secret}:\n{text}");
    }
}

#[test]
fn serve_logs_no_token() {
    let out = common::repo().join("target/secrets");
    std::fs::create_dir_all(&out).unwrap();
    let (mut server, port) = start_server(
        "serve",
        &["--api-key", "api-key-s3cret", "--log-format", "json"],
        &[("RUST_LOG", "debug")],
        &out,
    );
    for token in ["api-key-s3cret", "wrong-api-key-s3cret"] {
        let request = format!(
            "POST /predict HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            common::http::EXAMPLE.len(),
            common::http::EXAMPLE
        );
        http_exchange(port, &request);
    }
    assert!(terminate(&mut server, Duration::from_secs(10)).success());
    assert_clean("serve", &server.log);
}

fn stream(name: &str, args: &[&str], out: &std::path::Path) -> Process {
    let closed = free_port().to_string();
    Process::spawn(
        name,
        Command::new(env!("CARGO_BIN_EXE_xgserve"))
            .args([
                "stream",
                "--brokers",
                &format!("127.0.0.1:{closed}"),
                "--metrics-port",
                "0",
            ])
            .args([
                "--kafka-option",
                "security.protocol=SASL_PLAINTEXT",
                "--kafka-option",
                "sasl.mechanism=PLAIN",
            ])
            .args([
                "--kafka-option",
                "sasl.username=bridge",
                "--kafka-option",
                "sasl.password=kafka-pa55word",
            ])
            .args(["--consumer-option", "sasl.password=consumer-pa55word"])
            .args(["--producer-option", "sasl.password=producer-pa55word"])
            .args(args)
            .env("RUST_LOG", "debug")
            .current_dir(common::repo()),
        out,
    )
}

fn exit_within(process: &mut Process, within: Duration) -> std::process::ExitStatus {
    common::process::wait_until(&format!("{} to exit", process.name), within, || {
        process.child.try_wait().unwrap()
    })
}

#[test]
fn stream_logs_no_password_running_or_refusing_to_start() {
    let out = common::repo().join("target/secrets");
    std::fs::create_dir_all(&out).unwrap();

    // Running against a broker that is not there: it logs its configuration and librdkafka's
    // connection errors until SIGTERM.
    let mut running = stream(
        "stream-running",
        &[
            "--predict-url",
            "http://127.0.0.1:9/predict",
            "--predict-token",
            "predict-t0ken",
            "--log-format",
            "json",
        ],
        &out,
    );
    std::thread::sleep(Duration::from_secs(3));
    running.assert_running();
    terminate(&mut running, Duration::from_secs(20));
    assert_clean("stream (running)", &running.log);

    // Refused at start: the Postgres sink cannot be reached (its URL holds a password).
    let pg = format!("postgres://bridge:pg-pa55word@127.0.0.1:{}/db", free_port());
    let mut refused = stream("stream-pg", &["--pg-sink", &pg], &out);
    assert!(!exit_within(&mut refused, Duration::from_secs(30)).success());
    assert_clean("stream (no Postgres)", &refused.log);

    // Refused by librdkafka at start: it takes no JAAS configuration, and says which setting.
    let jaas = "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"jaas-pa55word\";";
    let mut refused = stream("stream-jaas", &["--consumer-option", jaas], &out);
    assert!(!exit_within(&mut refused, Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(&refused.log).unwrap();
    assert!(log.contains("setting sasl.jaas.config"), "{log}");
    assert_clean("stream (JAAS refused)", &refused.log);

    // Refused at start: an option without its key, which may be a secret pasted alone.
    let mut unkeyed = stream("stream-unkeyed", &["--kafka-option", "unkeyed-s3cret"], &out);
    assert!(!exit_within(&mut unkeyed, Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(&unkeyed.log).unwrap();
    assert!(log.contains("one of them has no key"), "{log}");
    assert_clean("stream (unkeyed option)", &unkeyed.log);
}
