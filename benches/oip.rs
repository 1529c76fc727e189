//! The Open Inference Protocol's three wire forms under load, in one run: v2 HTTP with JSON
//! tensors, v2 HTTP with binary tensors (tritonclient's default) and gRPC with raw contents
//! (tritonclient's), at 2 and 100 rows a request, 16 connections. The server runs in this process
//! as `xgserve serve` runs it (HTTP on its per-core workers, gRPC on its own runtime); the load
//! generator is one thread, so the server keeps most of the machine. The six cases alternate
//! within each round; each prints its rate and p99 per round, then min and median over rounds.
//!
//! The load generator shares the machine, and a gRPC client spends more CPU per call than an
//! HTTP/1 one, so the rates partly measure the client. The CPU time the server's threads and the
//! load thread spend per request (from /proc, per thread) is printed too: the server's is what the
//! wire form costs xgserve.
//!
//!     cargo bench --bench oip -- [seconds per case, default 5] [rounds, default 3]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use xgserve::bundle::Model;
use xgserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use xgserve::grpc::proto::model_infer_request::InferInputTensor;
use xgserve::grpc::proto::ModelInferRequest;
use xgserve::http::{AppState, HttpConfig};

const CONNECTIONS: usize = 16;

#[derive(Clone, Copy, Debug)]
enum Wire {
    Json,
    Binary,
    Grpc,
}

/// The bundle's example cars, cycled to `rows`: (name, datatype, JSON values).
fn columns(model: &Model, rows: usize) -> Vec<(String, &'static str, Vec<serde_json::Value>)> {
    let example: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.dir.join("example.json")).unwrap()).unwrap();
    model
        .preprocessor
        .inputs()
        .iter()
        .map(|input| {
            let values = example[&input.name].as_array().unwrap();
            let datatype = xgserve::input::v2_datatype(input.kind);
            let datatype = if datatype == "FP64" && values.iter().all(|v| v.is_i64()) {
                "INT64"
            } else {
                datatype
            };
            (
                input.name.clone(),
                datatype,
                values.iter().cycle().take(rows).cloned().collect(),
            )
        })
        .collect()
}

fn binary(datatype: &str, values: &[serde_json::Value]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| match datatype {
            "BYTES" => {
                let s = v.as_str().unwrap().as_bytes();
                [&(s.len() as u32).to_le_bytes()[..], s].concat()
            }
            "INT64" => v.as_i64().unwrap().to_le_bytes().to_vec(),
            _ => v.as_f64().unwrap().to_le_bytes().to_vec(),
        })
        .collect()
}

/// The HTTP body and headers of a request in JSON or binary form.
fn http_request(model: &Model, rows: usize, wire: Wire) -> (Bytes, Option<usize>) {
    let mut inputs = Vec::new();
    let mut data = Vec::new();
    for (name, datatype, values) in columns(model, rows) {
        let mut tensor = serde_json::json!({"name": name, "datatype": datatype, "shape": [rows]});
        if let Wire::Binary = wire {
            let bytes = binary(datatype, &values);
            tensor["parameters"] = serde_json::json!({"binary_data_size": bytes.len()});
            data.extend(bytes);
        } else {
            tensor["data"] = values.into();
        }
        inputs.push(tensor);
    }
    let mut request = serde_json::json!({"inputs": inputs});
    if let Wire::Binary = wire {
        request["parameters"] = serde_json::json!({"binary_data_output": true});
    }
    let header = request.to_string();
    let length = matches!(wire, Wire::Binary).then_some(header.len());
    ([header.as_bytes(), &data].concat().into(), length)
}

fn grpc_request(model: &Model, rows: usize) -> ModelInferRequest {
    let (inputs, raw) = columns(model, rows)
        .into_iter()
        .map(|(name, datatype, values)| {
            let tensor = InferInputTensor {
                name,
                datatype: datatype.into(),
                shape: vec![rows as i64],
                ..Default::default()
            };
            (tensor, binary(datatype, &values).into())
        })
        .unzip();
    ModelInferRequest {
        model_name: model.manifest.name.clone(),
        inputs,
        raw_input_contents: raw,
        ..Default::default()
    }
}

/// CPU seconds so far of this process's threads, split into the load generator's (named `load`)
/// and the rest (the server's).
fn cpu_seconds() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ
    let (mut server, mut load) = (0.0, 0.0);
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(path.join("stat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue;
        };
        // Fields after the parenthesised name: state is the 3rd field, utime the 14th, stime the 15th.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let seconds = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks;
        if name.trim() == "load" {
            load += seconds;
        } else {
            server += seconds;
        }
    }
    (server, load)
}

/// Requests answered and their latencies, over all connections, for `seconds`.
async fn load(
    wire: Wire,
    rows: usize,
    model: &Model,
    http: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
    seconds: u64,
) -> (f64, Duration) {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        match wire {
            Wire::Grpc => {
                let request = grpc_request(model, rows);
                let mut client = GrpcInferenceServiceClient::connect(format!("http://{grpc}"))
                    .await
                    .unwrap()
                    .max_decoding_message_size(usize::MAX);
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < until {
                        let started = Instant::now();
                        let answer = client.model_infer(request.clone()).await.unwrap();
                        assert_eq!(answer.get_ref().raw_output_contents[0].len(), rows * 4);
                        latencies.push(started.elapsed());
                    }
                    latencies
                }));
            }
            Wire::Json | Wire::Binary => {
                let (body, header) = http_request(model, rows, wire);
                let path = format!("/v2/models/{}/infer", model.manifest.name);
                let stream = tokio::net::TcpStream::connect(http).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
                tokio::spawn(connection);
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < until {
                        let mut request = hyper::Request::post(&path).header("host", "127.0.0.1");
                        if let Some(length) = header {
                            request = request.header("inference-header-content-length", length);
                        }
                        let request = request.body(Full::new(body.clone())).unwrap();
                        let started = Instant::now();
                        sender.ready().await.unwrap();
                        let answer = sender.send_request(request).await.unwrap();
                        assert!(answer.status().is_success(), "{}", answer.status());
                        answer.into_body().collect().await.unwrap();
                        latencies.push(started.elapsed());
                    }
                    latencies
                }));
            }
        }
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    (latencies.len() as f64 / elapsed, p99)
}

fn main() {
    let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let seconds = numbers.first().copied().unwrap_or(5);
    let rounds = numbers.get(1).copied().unwrap_or(3) as usize;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ford_used_car_price");
    let model = Arc::new(Model::load(&dir).unwrap());
    let config = HttpConfig {
        max_concurrency: 4096,
        ..HttpConfig::default()
    };
    let state = AppState::new(Model::load(&dir).unwrap(), config);

    // The server, as `serve` runs it: HTTP on its own workers, gRPC on a runtime of its own.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let http = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let grpc = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let (http_address, grpc_address) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    server.spawn(xgserve::http::run(http, state.clone(), std::future::pending()));
    server.spawn(xgserve::grpc::run(grpc, state.core.clone(), std::future::pending()));

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();
    let cases: Vec<(Wire, usize)> = [2, 100]
        .into_iter()
        .flat_map(|rows| [Wire::Json, Wire::Binary, Wire::Grpc].map(|wire| (wire, rows)))
        .collect();
    println!(
        "{cores} cores, {CONNECTIONS} connections, one load thread, {seconds} s per case, {rounds} rounds, cases alternating"
    );
    let mut results = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        // Each round starts at a different case, so no case always runs first or last.
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let (wire, rows) = cases[i];
            let (server_before, load_before) = cpu_seconds();
            let (rate, p99) = client.block_on(load(wire, rows, &model, http_address, grpc_address, seconds));
            let (server_after, load_after) = cpu_seconds();
            let requests = rate * seconds as f64;
            let server_us = (server_after - server_before) / requests * 1e6;
            let load_us = (load_after - load_before) / requests * 1e6;
            println!(
                "round {} {wire:?} {rows} rows: {rate:.0} req/s, p99 {:.2} ms, CPU per request: server {server_us:.1} µs, load generator {load_us:.1} µs",
                round + 1,
                p99.as_secs_f64() * 1e3
            );
            results[i].push((rate, p99, server_us));
        }
    }
    println!(
        "\n| wire | rows | req/s min | req/s median | p99 ms min | p99 ms median | server CPU µs/req min | median |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for ((wire, rows), runs) in cases.iter().zip(&mut results) {
        let sorted = |f: &dyn Fn(&(f64, Duration, f64)) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let rates = sorted(&|r| r.0);
        let p99s = sorted(&|r| r.1.as_secs_f64() * 1e3);
        let cpu = sorted(&|r| r.2);
        println!(
            "| {wire:?} | {rows} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} | {:.1} |",
            rates[0],
            rates[rates.len() / 2],
            p99s[0],
            p99s[p99s.len() / 2],
            cpu[0],
            cpu[cpu.len() / 2]
        );
    }
}
