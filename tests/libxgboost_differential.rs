//! The engine against libxgboost on 100,000+ random rows of features, including NaN, 0.0, values
//! exactly on split thresholds and their float neighbours: outputs must be identical.
#![cfg(feature = "libxgboost")]

mod common;

use xgserve::bundle::Model;
use xgserve::engine::libxgboost::LibXgboost;
use xgserve::engine::Forest;

fn assert_identical(name: &str, bytes: &[u8], forest: &Forest, rows: usize, seed: u64) -> usize {
    let reference = LibXgboost::from_slice(bytes).unwrap();
    let features = common::rows::random_rows(forest, rows, seed, false);
    let ours = forest.predict(features.view()).unwrap();
    let theirs = reference.predict(features.view()).unwrap();
    assert_eq!(ours.len(), theirs.len());
    let differ: Vec<usize> = (0..rows)
        .filter(|&i| ours[i].to_bits() != theirs[i].to_bits())
        .collect();
    assert!(
        differ.is_empty(),
        "{name}: {} of {rows} rows differ, first row {}: engine {} vs libxgboost {}",
        differ.len(),
        differ[0],
        ours[differ[0]],
        theirs[differ[0]]
    );
    rows
}

#[test]
fn shipped_model_matches_libxgboost_on_random_rows() {
    let model = Model::load(common::shipped_bundle()).unwrap();
    let bytes = std::fs::read(common::shipped_bundle().join("model.json")).unwrap();
    let checked = assert_identical("shipped", &bytes, &model.forest, 120_000, 0x9e37_79b9_7f4a_7c15);
    assert!(checked >= 100_000);
}

#[test]
fn xgboost_1_6_fixtures_match_libxgboost_on_random_rows() {
    // xgboost-rs vendors XGBoost 1.6.2, so it reads the 1.6 fixtures (both formats).
    let dir = common::repo().join("tests/fixtures/xgboost/1.6.2");
    let mut models = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let is_model = name.ends_with(".json") && !name.ends_with(".expected.json") || name.ends_with(".ubj");
        // The early-stopping fixture keeps a best_iteration, which libxgboost's plain predict ignores.
        if !is_model || name.starts_with("refuse-") || name.starts_with("early-stopping") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let forest = Forest::from_slice(&bytes).unwrap();
        assert_identical(&name, &bytes, &forest, 20_000, models as u64 + 1);
        models += 1;
    }
    assert!(models >= 16, "models checked: {models}");
}
