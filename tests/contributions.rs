//! The engine's exact per-feature contributions (TreeSHAP) against XGBoost's own `pred_contribs`,
//! which the Python reference computes for every row of the Ford data set (`training/train.py
//! --contributions`, run by `tests/run`), on the same features.

mod common;

use serde::Deserialize;
use xgserve::bundle::Model;
use xgserve::input::{decode_csv, Limits};

/// Each value may differ from XGBoost's by this share of the row's total absolute contribution.
/// XGBoost sums a row's contributions in float32, tree by tree (100 trees, a dozen path terms each);
/// every float32 addition may round by 2^-24 (6e-8) of the running total, so about a thousand of
/// them stay under 1e-4 of it. The engine sums in f64, so the difference is XGBoost's rounding.
const TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    contributions: Vec<Vec<f32>>,
}

#[test]
fn contributions_equal_xgboosts_pred_contribs_on_every_row_of_the_data_set() {
    let model = Model::load(common::shipped_bundle()).unwrap();
    let path = common::reference().join("ford/ford_contributions.json");
    let reference: Reference = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let csv = std::fs::read(common::ford_csv()).unwrap();
    let batch = decode_csv(&csv, model.preprocessor.inputs(), Limits { max_rows: usize::MAX }).unwrap();
    let features = model.preprocessor.transform(&batch).unwrap();
    let ours = model.forest.contributions(features.view()).unwrap();
    let margins = model.forest.predict_margin(features.view()).unwrap();
    assert_eq!(ours.nrows(), reference.contributions.len(), "rows");
    assert_eq!(ours.nrows(), 17_965);

    // (relative error, row, column), the largest seen.
    let mut worst = (0.0f64, 0, 0);
    for (row, expected) in reference.contributions.iter().enumerate() {
        assert_eq!(expected.len(), ours.ncols(), "a value per feature and the bias");
        let scale: f64 = expected.iter().map(|v| f64::from(v.abs())).sum::<f64>().max(1.0);
        for (column, &want) in expected.iter().enumerate() {
            let error = (f64::from(ours[[row, column]]) - f64::from(want)).abs() / scale;
            if error > worst.0 {
                worst = (error, row, column);
            }
            assert!(
                error <= TOLERANCE,
                "row {row}, column {column}: engine {}, XGBoost {want} (row's scale {scale})",
                ours[[row, column]]
            );
        }
        // The bias and the features' values add up to the margin.
        let sum: f64 = ours.row(row).iter().map(|&v| f64::from(v)).sum();
        assert!(
            (sum - f64::from(margins[row])).abs() / scale <= TOLERANCE,
            "row {row}: contributions add up to {sum}, the margin is {}",
            margins[row]
        );
    }
    let (error, row, column) = worst;
    eprintln!(
        "contributions: 17,965 rows x {} values within {TOLERANCE:e} of XGBoost's; largest difference \
         {error:.2e} of the row's scale (row {row}, column {column}: engine {}, XGBoost {})",
        ours.ncols(),
        ours[[row, column]],
        reference.contributions[row][column]
    );
}
