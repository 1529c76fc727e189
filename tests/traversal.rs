//! Every traversal of the engine, each forced in turn, against the reference walk and against the
//! Python pipeline: all 17,965 Ford rows, the bundle's parity cases, and rows built to sit on,
//! just below and just above every threshold of the shipped model and of the XGBoost version
//! fixtures (whose rows have missing values and both default directions). The version fixtures'
//! own outputs are checked per traversal in `engine_versions.rs`.

mod common;

use std::process::Command;

use ndarray::{Array2, ShapeBuilder};
use xgserve::bundle::{single_row, Model};
use xgserve::engine::{Forest, Traversal};
use xgserve::input::{decode_columnar, decode_csv, Limits};

/// Python's prediction for every Ford row (it scores them all).
fn python_predictions() -> Vec<f32> {
    let path = common::reference().join("ford/ford_predictions.json");
    common::reference_predictions(&path)
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn this_machine_takes_the_avx512_walk_by_default() {
    // CI's machine has AVX-512; a machine without it takes the portable walk, which every test here
    // still checks. Asserted so that CI cannot quietly stop covering the fast path.
    if std::arch::is_x86_feature_detected!("avx512f") {
        let model = Model::load(common::shipped_bundle()).unwrap();
        assert_eq!(model.forest.traversal(), Traversal::Avx512);
        assert_eq!(common::traversals(), [Traversal::Portable, Traversal::Avx512]);
    } else {
        assert_eq!(common::traversals(), [Traversal::Portable]);
    }
}

#[test]
fn every_traversal_scores_every_ford_row_and_parity_case_as_python_does() {
    let model = Model::load(common::shipped_bundle()).unwrap();
    let body = std::fs::read(common::ford_csv()).unwrap();
    let batch = decode_csv(&body, model.preprocessor.inputs(), Limits { max_rows: usize::MAX }).unwrap();
    let features = model.preprocessor.transform(&batch).unwrap();
    let expected = python_predictions();
    assert_eq!(features.nrows(), 17_965);
    // What `Model::predict` hands the engine: the same features, column after column.
    let by_columns = model
        .preprocessor
        .transform_counting_by_columns(&batch, &mut [])
        .unwrap();
    assert!(by_columns.t().is_standard_layout() && !by_columns.is_standard_layout());
    assert_eq!(
        bits(by_columns.as_slice_memory_order().unwrap()),
        bits(features.t().as_standard_layout().as_slice().unwrap())
    );

    let parity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::shipped_bundle().join("parity.json")).unwrap()).unwrap();
    let inputs = serde_json::to_vec(&parity["inputs"]).unwrap();
    let cases = decode_columnar(&inputs, model.preprocessor.inputs(), Limits { max_rows: usize::MAX }).unwrap();
    let case_expected: Vec<Option<f32>> = serde_json::from_value(parity["predictions"].clone()).unwrap();
    // The cases Python scores, as one matrix (the others are refused before the engine).
    let scored: Vec<(usize, f32)> = case_expected
        .iter()
        .enumerate()
        .filter_map(|(r, p)| Some((r, (*p)?)))
        .collect();
    let mut case_features = Array2::zeros((0, model.forest.num_features()));
    for &(row, _) in &scored {
        let one = model.preprocessor.transform(&single_row(&cases, row)).unwrap();
        case_features.push_row(one.row(0)).unwrap();
    }
    assert!(scored.len() > 250, "{} parity cases", scored.len());

    for traversal in common::traversals() {
        let forest = model.forest.clone().with_traversal(traversal);
        assert_eq!(forest.traversal(), traversal, "the shipped model fits every traversal");
        for (layout, features) in [("rows", &features), ("columns", &by_columns)] {
            let got = forest.predict(features.view()).unwrap();
            let wrong: Vec<usize> = (0..got.len())
                .filter(|&r| got[r].to_bits() != expected[r].to_bits())
                .collect();
            assert!(
                wrong.is_empty(),
                "{}, by {layout}: {} of 17,965 rows differ from Python, first row {:?}",
                traversal.name(),
                wrong.len(),
                wrong.first()
            );
        }
        // Every way a batch can end inside a block of sixteen lanes, and around a pass of 256 rows,
        // row after row and column after column.
        for rows in (8..=48).chain([100, 255, 256, 257, 1000]) {
            let part = features.slice(ndarray::s![..rows, ..]);
            let mut columns = Array2::zeros((rows, part.ncols()).f());
            columns.assign(&part);
            for (layout, part) in [("rows", part), ("columns", columns.view())] {
                assert_eq!(
                    bits(&forest.predict(part).unwrap()),
                    bits(&expected[..rows]),
                    "{}, {rows} rows by {layout}",
                    traversal.name()
                );
            }
        }
        let got = forest.predict(case_features.view()).unwrap();
        for (&(case, want), got) in scored.iter().zip(&got) {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{}: parity case {case}",
                traversal.name()
            );
        }
    }
}

#[test]
fn the_fast_walk_takes_the_reference_walks_branch_at_every_threshold() {
    let mut forests = vec![(
        "shipped".to_owned(),
        Model::load(common::shipped_bundle()).unwrap().forest,
    )];
    let fixtures = common::repo().join("tests/fixtures/xgboost");
    for version in std::fs::read_dir(&fixtures).unwrap() {
        for file in std::fs::read_dir(version.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let name = path.to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.ends_with(".expected.json") || name.ends_with(".ubj") {
                // The fixtures of refused boosters are checked in engine_versions.rs.
                if let Ok(forest) = Forest::from_slice(&std::fs::read(&path).unwrap()) {
                    forests.push((name, forest));
                }
            }
        }
    }
    let mut fast = 0;
    for (name, forest) in &forests {
        let features = common::rows::random_rows(forest, 5_000, 0x9E37_79B9_7F4A_7C15, true);
        let reference = forest
            .clone()
            .with_traversal(Traversal::Portable)
            .predict_margin(features.view())
            .unwrap();
        for traversal in common::traversals() {
            let forest = forest.clone().with_traversal(traversal);
            fast += usize::from(forest.traversal() == Traversal::Avx512);
            let got = forest.predict_margin(features.view()).unwrap();
            for row in 0..got.len() {
                assert_eq!(
                    got[row].to_bits(),
                    reference[row].to_bits(),
                    "{name} ({}): row {row} {:?}: margin {} != the reference walk's {}",
                    forest.traversal().name(),
                    features.row(row),
                    got[row],
                    reference[row]
                );
            }
        }
    }
    if common::traversals().contains(&Traversal::Avx512) {
        assert!(fast >= 60, "{fast} of {} models walked with AVX-512", forests.len());
    }
}

/// The process-wide choice: `XGSERVE_TRAVERSAL` picks the path for every command, a path the CPU
/// lacks or an unknown name is refused before anything runs.
#[test]
fn xgserve_traversal_forces_the_path_and_refuses_what_it_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let run = |traversal: &str, output: &str| {
        Command::new(env!("CARGO_BIN_EXE_xgserve"))
            .args(["predict", "--quiet", "--input"])
            .arg(common::ford_csv())
            .arg("--output")
            .arg(dir.path().join(output))
            .env("XGSERVE_TRAVERSAL", traversal)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let expected = python_predictions();
    for traversal in common::traversals() {
        let output = format!("{}.json", traversal.name());
        let out = run(traversal.name(), &output);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got: Vec<f32> = serde_json::from_slice(&std::fs::read(dir.path().join(&output)).unwrap()).unwrap();
        assert_eq!(
            bits(&got),
            bits(&expected),
            "xgserve predict with XGSERVE_TRAVERSAL={}",
            traversal.name()
        );
    }
    let out = run("sse9", "never.json");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("XGSERVE_TRAVERSAL=\"sse9\": expected portable or avx512"),
        "{stderr}"
    );
    if !common::traversals().contains(&Traversal::Avx512) {
        let out = run("avx512", "never.json");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("no AVX-512F"), "{stderr}");
    }
    assert!(!dir.path().join("never.json").exists());
}
