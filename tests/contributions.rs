//! The engine's exact per-feature contributions (TreeSHAP) against XGBoost's own `pred_contribs`,
//! which the Python reference computes (`training/train.py --contributions`, run by `tests/run`) for
//! every row of the Ford data set and for the bundle's parity cases (nulls, unknown and padded
//! categories, extreme numbers), on the same features; and the engine's two implementations (the
//! per-leaf tables that serve requests and the reference walk) against each other on those rows.

mod common;

use ndarray::Array2;
use serde::Deserialize;
use xgserve::bundle::Model;
use xgserve::input::{decode_csv, decode_json, Limits};

/// Each value may differ from XGBoost's by this share of the row's total absolute contribution.
/// XGBoost sums a row's contributions in float32, tree by tree (100 trees, a dozen path terms each);
/// every float32 addition may round by 2^-24 (6e-8) of the running total, so about a thousand of
/// them stay under 1e-4 of it. The engine sums in f64, so the difference is XGBoost's rounding.
const TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    contributions: Vec<Vec<f32>>,
    parity: ParityReference,
}

#[derive(Deserialize)]
struct ParityReference {
    /// The parity cases XGBoost explained, by index in the bundle's parity.json.
    rows: Vec<usize>,
    contributions: Vec<Vec<f32>>,
}

/// The tables may differ from the reference walk by this share of the row's total absolute
/// contribution: each table value is the walk's f64 sum rounded once to float32 (2^-24, 6e-8, of
/// itself); both add in f64, and a row's values are a few thousand of them, each far smaller than
/// the row's total.
const TABLE_TOLERANCE: f64 = 1e-6;

fn reference() -> Reference {
    let path = common::reference().join("ford/ford_contributions.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Asserts every value within [`TOLERANCE`] of XGBoost's and every row adding up to its margin;
/// prints the largest difference seen, labelled `what`.
fn assert_matches(what: &str, model: &Model, features: &Array2<f32>, expected: &[Vec<f32>]) {
    let ours = model.forest.contributions(features.view()).unwrap();
    let margins = model.forest.predict_margin(features.view()).unwrap();
    assert_eq!(ours.nrows(), expected.len(), "{what}: rows");
    // (relative error, row, column), the largest seen.
    let mut worst = (0.0f64, 0, 0);
    for (row, expected) in expected.iter().enumerate() {
        assert_eq!(expected.len(), ours.ncols(), "a value per feature and the bias");
        let scale: f64 = expected.iter().map(|v| f64::from(v.abs())).sum::<f64>().max(1.0);
        for (column, &want) in expected.iter().enumerate() {
            let error = (f64::from(ours[[row, column]]) - f64::from(want)).abs() / scale;
            if error > worst.0 {
                worst = (error, row, column);
            }
            assert!(
                error <= TOLERANCE,
                "{what}, row {row}, column {column}: engine {}, XGBoost {want} (row's scale {scale})",
                ours[[row, column]]
            );
        }
        // The bias and the features' values add up to the margin.
        let sum: f64 = ours.row(row).iter().map(|&v| f64::from(v)).sum();
        assert!(
            (sum - f64::from(margins[row])).abs() / scale <= TOLERANCE,
            "{what}, row {row}: contributions add up to {sum}, the margin is {}",
            margins[row]
        );
    }
    let (error, row, column) = worst;
    eprintln!(
        "contributions, {what}: {} rows x {} values within {TOLERANCE:e} of XGBoost's; largest difference \
         {error:.2e} of the row's scale (row {row}, column {column}: engine {}, XGBoost {})",
        ours.nrows(),
        ours.ncols(),
        ours[[row, column]],
        expected[row][column]
    );
}

/// Asserts the tables' values within [`TABLE_TOLERANCE`] of the reference walk's on `features`;
/// prints the largest difference seen, labelled `what`.
fn assert_tables_match_the_walk(what: &str, model: &Model, features: &Array2<f32>) {
    let tables = model.forest.contributions(features.view()).unwrap();
    let walk = model.forest.reference_contributions(features.view()).unwrap();
    let mut worst = 0.0f64;
    for (row, (tables, walk)) in tables.rows().into_iter().zip(walk.rows()).enumerate() {
        let scale: f64 = walk.iter().map(|v| f64::from(v.abs())).sum::<f64>().max(1.0);
        for (column, (&ours, &want)) in tables.iter().zip(walk.iter()).enumerate() {
            let error = (f64::from(ours) - f64::from(want)).abs() / scale;
            worst = worst.max(error);
            assert!(
                error <= TABLE_TOLERANCE,
                "{what}, row {row}, column {column}: tables {ours}, walk {want} (row's scale {scale})"
            );
        }
    }
    eprintln!(
        "tables against the walk, {what}: {} rows, largest difference {worst:.2e} of the row's scale",
        tables.nrows()
    );
}

fn ford_features(model: &Model) -> Array2<f32> {
    let csv = std::fs::read(common::ford_csv()).unwrap();
    let batch = decode_csv(&csv, model.preprocessor.inputs(), Limits { max_rows: usize::MAX }).unwrap();
    let features = model.preprocessor.transform(&batch).unwrap();
    assert_eq!(features.nrows(), 17_965);
    features
}

#[test]
fn contributions_equal_xgboosts_pred_contribs_on_every_row_of_the_data_set() {
    let model = Model::load(common::shipped_bundle()).unwrap();
    let reference = reference();
    assert_matches(
        "the Ford data set",
        &model,
        &ford_features(&model),
        &reference.contributions,
    );
}

#[test]
fn the_tables_equal_the_reference_walk_on_every_row_and_parity_case() {
    let model = Model::load(common::shipped_bundle()).unwrap();
    assert_tables_match_the_walk("the Ford data set", &model, &ford_features(&model));
    // Every parity case, the refused ones' neighbours included: nulls, unknown categories, extremes.
    let parity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.dir.join("parity.json")).unwrap()).unwrap();
    let body = serde_json::to_vec(&parity["inputs"]).unwrap();
    let batch = decode_json(&body, model.preprocessor.inputs(), Limits { max_rows: usize::MAX }).unwrap();
    let rows: Vec<Array2<f32>> = (0..batch.rows())
        .filter_map(|r| {
            model
                .preprocessor
                .transform(&xgserve::bundle::single_row(&batch, r))
                .ok()
        })
        .collect();
    assert!(rows.len() > 250, "{} parity cases are scored", rows.len());
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    let features = ndarray::concatenate(ndarray::Axis(0), &views).unwrap();
    assert!(features.iter().any(|x| x.is_nan()), "missing values are among them");
    assert_tables_match_the_walk("the parity cases", &model, &features);
}

#[test]
fn contributions_equal_xgboosts_pred_contribs_on_the_parity_cases() {
    // The reference bundle, whose parity.json the Python side explained.
    let dir = common::reference().join("ford");
    let model = Model::load(&dir).unwrap();
    let reference = reference().parity;
    let parity: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("parity.json")).unwrap()).unwrap();
    let inputs = parity["inputs"].as_object().unwrap();
    // The explained cases alone, as one columnar body.
    let body: serde_json::Map<String, serde_json::Value> = inputs
        .iter()
        .map(|(name, values)| {
            let values = values.as_array().unwrap();
            let kept = reference.rows.iter().map(|&i| values[i].clone()).collect();
            (name.clone(), serde_json::Value::Array(kept))
        })
        .collect();
    let cases = inputs["model"].as_array().unwrap().len();
    assert!(
        reference.rows.len() * 100 >= cases * 95,
        "XGBoost explained {} of {cases} cases",
        reference.rows.len()
    );
    let body = serde_json::to_vec(&body).unwrap();
    let batch = decode_json(&body, model.preprocessor.inputs(), Limits { max_rows: usize::MAX }).unwrap();
    let features = model.preprocessor.transform(&batch).unwrap();
    // Unknown and missing categories are among them: rows where a one-hot block is all unset.
    let texts = parity["inputs"]["transmission"].as_array().unwrap();
    assert!(
        reference.rows.iter().any(|&i| texts[i].is_null()),
        "a null category is explained"
    );
    assert_matches("the parity cases", &model, &features, &reference.contributions);
}
