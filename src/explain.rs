//! Why a price: each row's prediction with its exact contributions (TreeSHAP), per model feature and
//! per input column, and how they are written (JSON for `/explain` and `predict --explain`, CSV for
//! the command line). Knows the bundle's names, nothing of any transport.

use ndarray::Array2;

use crate::bundle::Model;
use crate::engine::ContributionError;
use crate::preprocess::InputError;
use crate::pyfloat;

/// Predictions with their contributions, in the model's margin (for a regression, the prediction's
/// own units): per row, the base value plus the contributions is the margin, which the objective's
/// link turns into the prediction.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub predictions: Vec<f32>,
    /// Rows × (features + 1): each model feature's contribution, then the base value.
    pub by_feature: Array2<f32>,
    /// Rows × (inputs + 1): each input column's contribution (its features' values summed), then
    /// the base value.
    pub by_column: Array2<f32>,
}

/// Why rows could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// The model cannot attribute its predictions (it records no covers): not the request's fault.
    #[error("{0}")]
    Model(String),
}

impl From<ContributionError> for ExplainError {
    fn from(error: ContributionError) -> Self {
        ExplainError::Model(error.to_string())
    }
}

/// What the contributions are attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attribution {
    /// The columns the client sent (a one-hot column's features summed into one value).
    #[default]
    Column,
    /// The model's own features, as XGBoost's `pred_contribs` gives them.
    Feature,
}

impl Attribution {
    /// `column` or `feature`, as `?by=` and `--explain-by` take them.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "column" => Some(Self::Column),
            "feature" => Some(Self::Feature),
            _ => None,
        }
    }
}

impl Explanation {
    /// Maps per-feature contributions (features + 1 columns, the bias last) to the inputs each
    /// feature comes from: `feature_inputs[f]` is the input of feature `f`. Sums in f64.
    pub fn new(predictions: Vec<f32>, by_feature: Array2<f32>, feature_inputs: &[usize], inputs: usize) -> Self {
        let mut by_column = Array2::zeros((by_feature.nrows(), inputs + 1));
        let mut sums = vec![0.0f64; inputs + 1];
        for (features, mut columns) in by_feature.rows().into_iter().zip(by_column.rows_mut()) {
            sums.fill(0.0);
            for (&input, &value) in feature_inputs.iter().zip(features.iter()) {
                sums[input] += f64::from(value);
            }
            sums[inputs] = f64::from(features[feature_inputs.len()]);
            for (slot, sum) in columns.iter_mut().zip(&sums) {
                *slot = *sum as f32;
            }
        }
        Self {
            predictions,
            by_feature,
            by_column,
        }
    }

    /// The contributions attributed `by`, each row's base value last.
    pub fn values(&self, by: Attribution) -> &Array2<f32> {
        match by {
            Attribution::Column => &self.by_column,
            Attribution::Feature => &self.by_feature,
        }
    }

    /// One JSON object per row, compact, floats written as `/predict` writes them:
    /// `[{"prediction":…,"base_value":…,"contributions":{"model":…,…}},…]`, the contributions
    /// keyed by the names `by` gives, in the model's order.
    pub fn to_json(&self, model: &Model, by: Attribution) -> String {
        let keys: Vec<String> = names(model, by)
            .iter()
            .map(|name| serde_json::Value::from(*name).to_string())
            .collect();
        let values = self.values(by);
        let mut out = String::with_capacity(32 + self.predictions.len() * (48 + keys.len() * 32));
        out.push('[');
        for (row, (prediction, contributions)) in self.predictions.iter().zip(values.rows()).enumerate() {
            if row > 0 {
                out.push(',');
            }
            out.push_str("{\"prediction\":");
            pyfloat::write_float(&mut out, f64::from(*prediction));
            out.push_str(",\"base_value\":");
            pyfloat::write_float(&mut out, f64::from(contributions[keys.len()]));
            out.push_str(",\"contributions\":{");
            for (i, (key, value)) in keys.iter().zip(contributions.iter()).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(key);
                out.push(':');
                pyfloat::write_float(&mut out, f64::from(*value));
            }
            out.push_str("}}");
        }
        out.push(']');
        out
    }

    /// CSV with a header row: `prediction`, `base_value`, then one column per name `by` gives.
    pub fn to_csv(&self, model: &Model, by: Attribution) -> String {
        let names = names(model, by);
        let mut out = String::from("prediction,base_value");
        for name in &names {
            out.push(',');
            out.push_str(&csv_field(name));
        }
        out.push('\n');
        for (prediction, contributions) in self.predictions.iter().zip(self.values(by).rows()) {
            pyfloat::write_float(&mut out, f64::from(*prediction));
            out.push(',');
            pyfloat::write_float(&mut out, f64::from(contributions[names.len()]));
            for value in contributions.iter().take(names.len()) {
                out.push(',');
                pyfloat::write_float(&mut out, f64::from(*value));
            }
            out.push('\n');
        }
        out
    }
}

/// The names contributions are attributed to, in the model's order: its input columns, or its
/// features.
pub fn names(model: &Model, by: Attribution) -> Vec<&str> {
    match by {
        Attribution::Column => model.preprocessor.inputs().iter().map(|i| i.name.as_str()).collect(),
        Attribution::Feature => model
            .preprocessor
            .spec()
            .feature_names
            .iter()
            .map(String::as_str)
            .collect(),
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
