//! Generated requests against the real binary: schemathesis (`tests/schemathesis/requirements.txt`)
//! reads the server's own OpenAPI document and sends a few hundred generated requests, valid and
//! invalid, to every operation it declares, with the bearer token set so the guarded routes are
//! reached too. Every check must pass: no 5xx, every status, header, content type and body as the
//! document declares, valid data accepted, invalid data refused, the token enforced.
//! `tests/schemathesis/hooks.py` states the one rule JSON Schema cannot (columns of equal length).
//! The seed is random and printed; `XGSERVE_SCHEMATHESIS_SEED` replays one.

mod common;

use std::process::Command;

use common::process::{start_server, venv_bin};

const TOKEN: &str = "schemathesis-token";

/// Least number of generated cases a run must send for the test to count.
const MIN_CASES: u64 = 300;

#[test]
fn generated_requests_get_answers_the_openapi_document_declares() {
    let out = common::repo().join("target/schemathesis");
    std::fs::create_dir_all(&out).unwrap();
    let (mut server, port) = start_server("server", &[], &[("XGSERVE_API_KEY", TOKEN)], &out);

    let mut schemathesis = Command::new(venv_bin("schemathesis"));
    schemathesis
        .current_dir(&out)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", common::repo().join("tests/schemathesis"))
        .args(["run", &format!("http://127.0.0.1:{port}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all", "--max-examples", "200", "--continue-on-failure"])
        .args(["--generation-database", "none", "--request-timeout", "10", "--no-color"]);
    if let Ok(seed) = std::env::var("XGSERVE_SCHEMATHESIS_SEED") {
        schemathesis.args(["--seed", &seed]);
    }
    let run = schemathesis
        .output()
        .expect("schemathesis (tests/run installs it into .venv)");
    let report = String::from_utf8_lossy(&run.stdout);
    std::fs::write(out.join("report.txt"), report.as_bytes()).unwrap();
    server.assert_running();
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{report}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        server.tail()
    );
    let cases = report
        .lines()
        .find_map(|line| line.trim().split_once(" generated"))
        .and_then(|(count, _)| count.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no case count in the report:\n{report}"));
    assert!(cases >= MIN_CASES, "only {cases} cases generated:\n{report}");
}
