//! `preprocess.json` as written by the Python exporter (`training/xgserve_export`).
//!
//! These types mirror the file one to one; `compile` checks them and builds the fast form.

use serde::{Deserialize, Serialize};

/// The whole file: the inputs a request must carry and the blocks that turn them into features.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub format: u32,
    pub inputs: Vec<InputSpec>,
    pub blocks: Vec<BlockSpec>,
    /// Set when the ColumnTransformer's output was sparse: XGBoost then saw every 0.0 as missing.
    #[serde(default)]
    pub zeros_are_missing: bool,
    pub num_features: usize,
    pub feature_names: Vec<String>,
}

/// One input column and the type of its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnKind,
}

/// The type of an input column's values; either may be null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Number,
    String,
}

/// One ColumnTransformer block: columns in, `width` features out, through `steps` in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub name: String,
    pub columns: Vec<String>,
    pub steps: Vec<StepSpec>,
    pub width: usize,
    pub feature_names: Vec<String>,
}

/// What to do with a category never seen in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// Encode as all zeros (one-hot).
    Ignore,
    /// Refuse the row.
    Error,
    /// Encode as `unknown_value` (ordinal).
    UseEncodedValue,
}

/// One operation. Per-column parameters are lists in the block's column order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    /// Text: remove surrounding whitespace, as Python's `str.strip()`.
    Strip,
    /// Text: keep the listed categories, replace every other value (null included).
    KeepOrReplace { keep: Vec<String>, replacement: String },
    /// Numbers: `ln(1 + x)`.
    Log1p,
    /// Numbers: `(x - mean) / scale`, either part optional.
    Standardize {
        mean: Option<Vec<f64>>,
        scale: Option<Vec<f64>>,
    },
    /// Numbers: `x * scale + min`, optionally clipped to `clip_range`.
    MinMax {
        scale: Vec<f64>,
        min: Vec<f64>,
        clip: bool,
        clip_range: [f64; 2],
    },
    /// Either type: replace a missing value (null or NaN) with the column's fill value.
    Impute { values: Vec<serde_json::Value> },
    /// Text to numbers: one 0/1 feature per category, `drop` naming a category encoded as all zeros.
    OneHot {
        categories: Vec<Vec<String>>,
        drop: Vec<Option<usize>>,
        unknown: Unknown,
    },
    /// Text to numbers: the category's index.
    Ordinal {
        categories: Vec<Vec<String>>,
        unknown: Unknown,
        unknown_value: Option<f64>,
    },
    /// Text to numbers: a learned value per category (e.g. its frequency), `default` otherwise.
    CategoryMap {
        maps: Vec<std::collections::BTreeMap<String, f64>>,
        default: f64,
    },
}
