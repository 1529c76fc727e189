//! The command line as a user runs it: `predict` (stdout, --output, --features, CSV), `models list`,
//! `openapi`, and a refusal that names the file.

mod common;

use common::process::xgserve;

use std::process::Command;

#[test]
fn predict_prints_bentos_answer_and_writes_files() {
    let (ok, stdout, stderr) = xgserve(&["predict", "--input", "tests/fixtures/bento_example.json"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), include_str!("fixtures/bento_example.response").trim());

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("cars.csv");
    std::fs::write(&csv, "model,year,transmission,mileage,fuelType,tax,mpg,engineSize\r\n C-MAX,2014,Semi-Auto,40000,Diesel,160,50.4,2.0\r\nEcoSport,2019,Automatic,1400,Petrol,150,44.1,1.0\r\n").unwrap();
    let output = dir.path().join("out.json");
    let (ok, _, stderr) = xgserve(&[
        "predict",
        "--input",
        csv.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_to_string(&output).unwrap().trim(), stdout.trim());

    let (ok, features, _) = xgserve(&["predict", "--features", "--input", "tests/fixtures/bento_example.json"]);
    assert!(ok);
    let rows: Vec<Vec<f64>> = serde_json::from_str(&features).unwrap();
    assert_eq!((rows.len(), rows[0].len()), (2, 12));
    assert_eq!(rows[0][4], 1.0, "transmission=Semi-Auto is the fifth feature");
}

#[test]
fn predict_refusals_name_the_file_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"model": ["Focus"], "year": ["new"]}"#).unwrap();
    let (ok, _, stderr) = xgserve(&["predict", "--input", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.json") && stderr.contains("column \"year\", row 0"),
        "{stderr}"
    );
    let (ok, _, stderr) = xgserve(&[
        "predict",
        "--model",
        "no/such/bundle",
        "--input",
        "tests/fixtures/bento_example.json",
    ]);
    assert!(!ok);
    assert!(stderr.contains("no/such/bundle/bundle.json: cannot read"), "{stderr}");
}

#[test]
fn models_list_shows_tag_library_size_and_time() {
    let (ok, stdout, stderr) = xgserve(&["models", "list"]);
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().contains("Tag"));
    let row = lines.next().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::shipped_bundle().join("bundle.json")).unwrap()).unwrap();
    assert!(
        row.contains(&format!(
            "ford_used_car_price:{}",
            manifest["version"].as_str().unwrap()
        )),
        "{row}"
    );
    assert!(row.contains("xgboost 1.6.2") && row.contains("KiB"), "{row}");
    assert!(
        row.contains(&manifest["created"].as_str().unwrap().replace('T', " ").replace('Z', "")),
        "{row}"
    );
}

#[test]
fn openapi_command_writes_the_committed_document() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("openapi.json");
    let (ok, _, stderr) = xgserve(&["openapi", "--output", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read(out).unwrap(),
        std::fs::read(common::repo().join("openapi/openapi.json")).unwrap()
    );
}

#[test]
fn healthcheck_passes_on_a_ready_server_and_fails_otherwise() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = common::http::state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(xgserve::http::run(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let url = format!("http://127.0.0.1:{port}/readyz");
    let (ok, _, stderr) = xgserve(&["healthcheck", "--url", &url]);
    assert!(ok, "{stderr}");
    state.stop_ready();
    let (ok, _, stderr) = xgserve(&["healthcheck", "--url", &url]);
    assert!(!ok && stderr.contains("status \"503\""), "{stderr}");
    stop.send(()).unwrap();
    runtime.block_on(server).unwrap().unwrap();
    let (ok, _, stderr) = xgserve(&["healthcheck", "--url", &url]);
    assert!(!ok && stderr.contains("cannot connect"), "{stderr}");
}

/// The real binary: `serve` on port 0 logs its configuration with the token redacted, logs each
/// answer in a span carrying the request id, SIGHUP reloads, SIGTERM drains (not ready, still
/// predicting, closing each connection after its answer) and exits 0.
#[test]
fn serve_reloads_on_sighup_and_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    // Killed when dropped, so a failing test leaves no orphan holding its output pipe open.
    let mut server = common::process::Process::spawn_piped(
        "serve",
        Command::new(env!("CARGO_BIN_EXE_xgserve"))
            .env_remove("XGSERVE_TRAVERSAL")
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--grpc-port",
                "0",
                "--log-format",
                "json",
                "--api-key",
                "hunter2-token",
                "--shutdown-delay-ms",
                "3000",
            ])
            .current_dir(common::repo())
            .env("RUST_LOG", "info,xgserve::http=debug"),
    );
    let mut lines = BufReader::new(server.child.stdout.take().unwrap()).lines();
    let mut wait_for = |message: &str| -> serde_json::Value {
        for line in lines.by_ref() {
            let line = line.unwrap();
            assert!(!line.contains("hunter2-token"), "the token was logged: {line}");
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["fields"]["message"] == "effective configuration" {
                assert!(line.contains("api_key: Some(<redacted>)"), "{line}");
            }
            if entry["fields"]["message"] == message {
                return entry;
            }
        }
        panic!("the server never logged {message:?}");
    };
    let ready = wait_for("ready");
    let address = ready["fields"]["address"].as_str().unwrap().to_owned();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    assert!(ready["fields"]["startup_ms"].as_u64().is_some());
    // The traversal the engine took: the CPU's fastest, with XGSERVE_TRAVERSAL unset.
    assert_eq!(
        ready["fields"]["traversal"],
        xgserve::engine::Traversal::detect().name()
    );
    let (ok, _, stderr) = xgserve(&["healthcheck", "--url", &format!("http://{address}/readyz")]);
    assert!(ok, "{stderr}");
    let (head, _) = common::process::http_exchange(
        port,
        "GET /livez HTTP/1.1\r\nHost: x\r\nx-request-id: trace-me-42\r\nConnection: close\r\n\r\n",
    );
    assert!(
        head.to_ascii_lowercase().contains("x-request-id: trace-me-42"),
        "{head}"
    );
    // The healthcheck's answer is logged first, then this one's.
    let answered = (0..2)
        .map(|_| wait_for("answered"))
        .find(|entry| entry["span"]["request_id"] == "trace-me-42")
        .expect("the answer is logged in a span with the request id");
    assert_eq!(answered["fields"]["status"], 200, "{answered}");
    assert_eq!(answered["span"]["uri"], "/livez", "{answered}");
    assert!(answered["fields"]["latency_us"].as_u64().is_some(), "{answered}");

    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("HUP");
    let reloaded = wait_for("reloaded");
    assert_eq!(reloaded["fields"]["name"], "ford_used_car_price");
    signal("TERM");
    wait_for("shutting down: not ready, closing connections after their answers");
    let (readyz, _) = common::process::http_exchange(port, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
    let body = common::http::EXAMPLE;
    let request = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hunter2-token\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (head, answer) = common::process::http_exchange(port, &request);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert_eq!(answer, common::http::EXAMPLE_RESPONSE.trim_end());
    wait_for("closing the listener, finishing requests in flight");
    wait_for("stopped");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}
