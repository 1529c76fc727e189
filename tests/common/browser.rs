//! The browser tests' driver: a playwright-core script under `tests/browser` run with node against
//! Debian's headless Chromium, its profile in a scratch directory that must be empty afterwards.

use std::ffi::OsString;

/// Runs `tests/browser/<script>` with `args` and returns what it printed, parsed as JSON.
pub async fn run(script: &str, args: Vec<OsString>) -> serde_json::Value {
    let script = super::repo().join("tests/browser").join(script);
    // The script's scratch space: Chromium's profile goes here, and must be gone afterwards.
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .args(&args)
            .env("TMPDIR", &tmp_path)
            .output()
            .expect("node (and `npm ci --prefix tests/browser`, which tests/run does)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the browser's profile was left behind: {left:?}");
    serde_json::from_str(stdout.trim()).unwrap()
}
