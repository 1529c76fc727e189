//! Real Open Inference Protocol clients against the real binary, started as KServe starts it: the
//! arguments of `deploy/kserve/servingruntime.yaml` (read by `tests/oip/kserve.py`), the bundle
//! copied to another folder as KServe's storage initializer does, the model named after the
//! InferenceService. `tests/oip/clients.py` (pinned tritonclient, `tests/oip/requirements.txt`)
//! then drives it over HTTP and gRPC with Ford rows as numpy arrays; every answer must equal
//! `/predict`'s, bit for bit, and every case must run.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{free_port, http_get, venv_bin, wait_for_port, Process};

/// The cases `clients.py` reports, each of which must have run.
const CASES: [&str; 19] = [
    "http metadata",
    "http defaults (binary in, binary out)",
    "http json in, json out",
    "http binary in, json out",
    "http json in, binary out",
    "http contributions, binary out",
    "http contributions, json out",
    "http gzip request",
    "http deflate request",
    "http async_infer",
    "http unknown model",
    "http asyncio client",
    "grpc health",
    "grpc metadata",
    "grpc infer",
    "grpc infer, output named",
    "grpc contributions",
    "grpc wrong datatype",
    "grpc unknown model",
];

#[test]
fn tritonclient_over_http_and_grpc_gets_the_answers_of_predict_from_the_kserve_runtime() {
    let repo = common::repo();
    let out = repo.join("target/oip");
    std::fs::create_dir_all(&out).unwrap();
    let deploy = repo.join("deploy/kserve");
    let read = Command::new(venv_bin("python"))
        .arg(repo.join("tests/oip/kserve.py"))
        .arg(deploy.join("servingruntime.yaml"))
        .arg(deploy.join("inferenceservice.yaml"))
        .output()
        .expect("python (tests/run makes .venv)");
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let kserve: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(kserve["kind"], "ServingRuntime");
    let protocols = kserve["protocols"].as_array().unwrap();
    assert!(
        protocols.contains(&"v2".into()) && protocols.contains(&"grpc-v2".into()),
        "{kserve}"
    );
    let services = kserve["services"].as_array().unwrap();
    for service in services {
        assert_eq!(service["kind"], "InferenceService");
        assert_eq!(service["runtime"], kserve["name"], "{service}");
        assert!(
            kserve["formats"].as_array().unwrap().contains(&service["format"]),
            "{service}"
        );
    }
    let http_service = services
        .iter()
        .find(|s| s["protocol"] == "v2")
        .expect("a v2 InferenceService");
    let grpc_service = services
        .iter()
        .find(|s| s["protocol"] == "grpc-v2")
        .expect("a grpc-v2 InferenceService");
    let name = http_service["name"].as_str().unwrap();

    // The runtime's arguments with the model at a copy of the bundle, the InferenceService's
    // name, and free loopback ports in place of the ones KServe routes to (which must be the
    // ports the manifests declare).
    let models = common::shipped_bundle_copy();
    let (http, grpc) = (free_port(), free_port());
    let args: Vec<String> = kserve["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| {
            let arg = arg.as_str().unwrap();
            match arg.split_once('=') {
                Some(("--model", "/mnt/models")) => format!("--model={}", models.path().display()),
                Some(("--model-name", "{{.Name}}")) => format!("--model-name={name}"),
                Some(("--host", _)) => "--host=127.0.0.1".to_owned(),
                Some(("--port", port)) => {
                    assert!(kserve["ports"]
                        .as_array()
                        .unwrap()
                        .contains(&port.parse::<u16>().unwrap().into()));
                    format!("--port={http}")
                }
                Some(("--grpc-port", port)) => {
                    assert_eq!(grpc_service["ports"][0], port.parse::<u16>().unwrap(), "{grpc_service}");
                    format!("--grpc-port={grpc}")
                }
                _ => arg.to_owned(),
            }
        })
        .collect();
    for flag in ["--model=", "--model-name=", "--port=", "--grpc-port="] {
        assert!(
            args.iter().any(|a| a.starts_with(flag)),
            "the runtime passes no {flag}: {args:?}"
        );
    }
    let mut server = Process::spawn(
        "server",
        Command::new(env!("CARGO_BIN_EXE_xgserve"))
            .args(&args)
            .current_dir(&out),
        &out,
    );
    wait_for_port(http, &mut server, Duration::from_secs(30));
    wait_for_port(grpc, &mut server, Duration::from_secs(30));

    let run = Command::new(venv_bin("python"))
        .arg(repo.join("tests/oip/clients.py"))
        .args(["--http", &http.to_string(), "--grpc", &grpc.to_string()])
        .args(["--model", name, "--rows", "1000"])
        .arg("--data")
        .arg(common::ford_csv())
        .output()
        .expect("python (tests/run makes .venv)");
    let report = String::from_utf8_lossy(&run.stdout);
    server.assert_running();
    assert!(
        run.status.success(),
        "{report}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        server.tail()
    );
    for case in CASES {
        assert!(
            report.lines().any(|l| l == format!("ok {case}")),
            "case {case:?} did not run:\n{report}"
        );
    }

    // The calls are counted by method and status code, beside the HTTP ones.
    let (_, metrics) = http_get(http, "/metrics");
    for series in [
        r#"xgserve_grpc_requests_total{code="OK",method="ModelInfer"} 3"#,
        r#"xgserve_grpc_requests_total{code="INVALID_ARGUMENT",method="ModelInfer"} 1"#,
        r#"xgserve_grpc_requests_total{code="NOT_FOUND",method="ModelInfer"} 1"#,
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }
}
