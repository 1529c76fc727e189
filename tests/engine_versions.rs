//! The engine against models saved by XGBoost 1.6, 2.1 and 3.1, in JSON and UBJSON, for every
//! supported objective: predictions and margins must equal libxgboost's bit for bit, and the exact
//! contributions (TreeSHAP) its `pred_contribs` within a stated tolerance. The fixtures and their
//! expected outputs come from `training/make_version_fixtures.py`.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;
use xgserve::engine::{Forest, LoadError, Objective, Traversal};

mod common;

#[derive(Deserialize)]
struct Expected {
    xgboost: String,
    rows: Vec<Vec<Option<f32>>>,
    predictions: Vec<f32>,
    margins: Vec<f32>,
    /// Per row, one value per feature, then the bias.
    contributions: Vec<Vec<f32>>,
}

/// A contribution may differ from libxgboost's by this share of its row's total absolute
/// contribution: libxgboost sums each value in float32 over the trees and their path terms (a few
/// hundred additions here, each rounding by up to 2^-24 of the running total), the engine in f64.
const CONTRIBUTION_TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xgboost")
}

fn files(suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for version in std::fs::read_dir(fixtures()).unwrap() {
        for file in std::fs::read_dir(version.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn matrix(rows: &[Vec<Option<f32>>]) -> Array2<f32> {
    let width = rows[0].len();
    let values = rows.iter().flatten().map(|v| v.unwrap_or(f32::NAN)).collect();
    Array2::from_shape_vec((rows.len(), width), values).unwrap()
}

#[test]
fn every_version_format_and_objective_matches_libxgboost() {
    let cases: Vec<PathBuf> = files(".expected.json")
        .into_iter()
        .filter(|p| !p.ends_with("sigmoid-cap.expected.json"))
        .collect();
    assert!(
        cases.len() >= 30,
        "expected fixtures for three versions, found {}",
        cases.len()
    );
    let mut versions = std::collections::BTreeSet::new();
    // Per version, the largest contribution difference: (share of the row's scale, where).
    let mut worst = std::collections::BTreeMap::<String, (f64, String)>::new();
    // Model files predicted with each traversal (a model the fast layout does not fit walks the
    // portable way whatever is asked).
    let mut walked = std::collections::BTreeMap::<&str, usize>::new();
    for case in &cases {
        let expected: Expected = serde_json::from_slice(&std::fs::read(case).unwrap()).unwrap();
        versions.insert(expected.xgboost.clone());
        let features = matrix(&expected.rows);
        let stem = case.to_string_lossy().trim_end_matches(".expected.json").to_owned();
        for format in ["json", "ubj"] {
            let path = format!("{stem}.{format}");
            let forest = Forest::from_slice(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"));
            let contributions = forest.contributions(features.view()).unwrap();
            assert_eq!(contributions.nrows(), expected.contributions.len(), "{path}: rows");
            for (row, want) in expected.contributions.iter().enumerate() {
                assert_eq!(
                    want.len(),
                    contributions.ncols(),
                    "{path}: a value per feature and the bias"
                );
                let scale = want.iter().map(|v| f64::from(v.abs())).sum::<f64>().max(1e-6);
                for (column, &want) in want.iter().enumerate() {
                    let got = contributions[[row, column]];
                    let error = (f64::from(got) - f64::from(want)).abs() / scale;
                    assert!(
                        error <= CONTRIBUTION_TOLERANCE,
                        "{path} row {row}, column {column}: contribution {got} != libxgboost's {want}"
                    );
                    let seen = worst.entry(expected.xgboost.clone()).or_default();
                    if error > seen.0 {
                        *seen = (error, format!("{path} row {row} column {column}: {got} vs {want}"));
                    }
                }
            }
            // Every traversal this CPU can take, each forced in turn.
            for traversal in common::traversals() {
                let forest = forest.clone().with_traversal(traversal);
                let margins = forest.predict_margin(features.view()).unwrap();
                let predictions = forest.predict(features.view()).unwrap();
                *walked.entry(forest.traversal().name()).or_default() += 1;
                let path = format!("{path} ({})", forest.traversal().name());
                for row in 0..expected.rows.len() {
                    assert_eq!(
                        margins[row].to_bits(),
                        expected.margins[row].to_bits(),
                        "{path} row {row}: margin {} != {}",
                        margins[row],
                        expected.margins[row]
                    );
                    assert_eq!(
                        predictions[row].to_bits(),
                        expected.predictions[row].to_bits(),
                        "{path} row {row}: prediction {} != {}",
                        predictions[row],
                        expected.predictions[row]
                    );
                }
            }
        }
    }
    assert_eq!(
        versions.len(),
        3,
        "fixtures from XGBoost 1.6, 2.1 and 3.x: {versions:?}"
    );
    eprintln!("model files predicted per traversal: {walked:?}");
    if common::traversals().contains(&Traversal::Avx512) {
        assert!(
            walked.get("avx512").is_some_and(|&n| n >= 60),
            "the AVX-512 walk takes nearly every fixture: {walked:?}"
        );
    }
    for (version, (error, at)) in &worst {
        eprintln!("contributions, XGBoost {version}: largest difference {error:.2e} of the row's scale ({at})");
    }
}

#[test]
fn unsupported_boosters_are_refused_with_the_reason() {
    let refusals = files(".json")
        .into_iter()
        .chain(files(".ubj"))
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("refuse-"));
    let mut seen = 0;
    for path in refusals {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let error = match Forest::from_slice(&std::fs::read(&path).unwrap()) {
            Ok(_) => panic!("{} loaded but must be refused", path.display()),
            Err(error) => error,
        };
        assert!(
            matches!(error, LoadError::Unsupported(_)),
            "{}: {error}",
            path.display()
        );
        let message = error.to_string();
        let reason = match name.as_str() {
            "refuse-dart" => "dart",
            "refuse-gblinear" => "gblinear",
            "refuse-multiclass" => "multi-class",
            "refuse-categorical" => "categorical",
            other => panic!("unexpected fixture {other}"),
        };
        assert!(
            message.contains(reason),
            "{}: {message:?} should say {reason}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 22, "refusal fixtures found: {seen}");
}

#[derive(Deserialize)]
struct SigmoidCap {
    margin: f32,
    prediction: f32,
}

#[test]
fn the_sigmoid_caps_its_exponent_as_every_version_does() {
    let cases = files("sigmoid-cap.expected.json");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let expected: SigmoidCap = serde_json::from_slice(&std::fs::read(&case).unwrap()).unwrap();
        let got = Objective::Logistic.transform(expected.margin);
        assert_eq!(
            got.to_bits(),
            expected.prediction.to_bits(),
            "{}: {got:e} != {:e}",
            case.display(),
            expected.prediction
        );
        assert!(got > 0.0, "an uncapped expf overflows to 1/inf = 0");
    }
}
