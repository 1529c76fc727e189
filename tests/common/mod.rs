//! Paths shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn shipped_bundle() -> PathBuf {
    repo().join("models/ford_used_car_price")
}

/// Outputs of the Python pipeline, written by `tests/run` before `cargo test`.
pub fn reference() -> PathBuf {
    let dir = std::env::var_os("XGSERVE_REFERENCE").map_or_else(|| repo().join("target/reference"), PathBuf::from);
    assert!(
        dir.join("ford/ford_predictions.json").is_file(),
        "{} has no Python reference outputs: run `tests/run` (it trains the pipeline and writes them)",
        dir.display()
    );
    dir
}

/// Predictions the Python pipeline wrote (`{"predictions": [...]}`, null where it refused a row).
pub fn reference_predictions(path: &Path) -> Vec<Option<f32>> {
    #[derive(serde::Deserialize)]
    struct Reference {
        predictions: Vec<Option<f32>>,
    }
    let reference: Reference = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    reference.predictions
}

/// The Ford data set, never committed; `tests/run` checks it is there.
pub fn ford_csv() -> PathBuf {
    let path = std::env::var_os("XGSERVE_DATA").map_or_else(|| repo().join("../shared/data/ford.csv"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} is missing: the parity tests need the Ford data set",
        path.display()
    );
    path
}

/// A copy of the shipped bundle, to break or change under a running server.
pub fn shipped_bundle_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped_bundle()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Every traversal of the engine this CPU can take: the portable walk, and AVX-512 where the CPU has
/// it (CI's machine does). Tests force each in turn.
pub fn traversals() -> Vec<xgserve::engine::Traversal> {
    use xgserve::engine::Traversal;
    let mut all = vec![Traversal::Portable];
    if Traversal::detect() == Traversal::Avx512 {
        all.push(Traversal::Avx512);
    }
    all
}

pub mod browser;
pub mod http;
pub mod logs;
pub mod process;
pub mod rows;
#[cfg(feature = "stream")]
pub mod seed_events;
#[cfg(feature = "stream")]
pub mod services;
