//! libxgboost itself (through xgboost-rs, which vendors XGBoost 1.6.2): the reference that the
//! differential test and the benchmark compare the engine with. Built only with `--features libxgboost`.

use ndarray::ArrayView2;
use xgboost_rs::{Booster, DMatrix};

/// A booster loaded by libxgboost.
pub struct LibXgboost {
    booster: Booster,
}

impl LibXgboost {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        Booster::load_buffer(bytes)
            .map(|booster| Self { booster })
            .map_err(|e| e.to_string())
    }

    /// Predictions for a row-major feature matrix; NaN is missing (not 0.0, as `DMatrix::from_dense`
    /// would have it). Threads follow `OMP_NUM_THREADS`.
    pub fn predict(&self, features: ArrayView2<'_, f32>) -> Result<Vec<f32>, String> {
        self.booster.predict(&matrix(features)?).map_err(|e| e.to_string())
    }

    /// libxgboost's exact contributions (`pred_contribs`): per row one value per feature, then the
    /// bias, row-major; NaN is missing, as in [`Self::predict`].
    pub fn contributions(&self, features: ArrayView2<'_, f32>) -> Result<Vec<f32>, String> {
        let (values, _) = self
            .booster
            .predict_contributions(&matrix(features)?)
            .map_err(|e| e.to_string())?;
        Ok(values)
    }
}

/// The features as a DMatrix in which NaN is missing.
fn matrix(features: ArrayView2<'_, f32>) -> Result<DMatrix, String> {
    let (rows, cols) = features.dim();
    let data = features.as_standard_layout();
    let data = data.as_slice().ok_or("features are not contiguous")?;
    let f32_size = std::mem::size_of::<f32>();
    DMatrix::from_col_major_f32(data, cols * f32_size, f32_size, rows, cols, 1, f32::NAN).map_err(|e| e.to_string())
}
