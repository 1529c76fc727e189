//! Objectives: how a summed margin becomes a prediction, and how `base_score` becomes a margin.
//!
//! Both are computed in `f32` with the same libm calls XGBoost makes (`expf`, `logf`), so outputs are
//! bit-identical, not merely close.

/// The learning objectives whose prediction transform the engine reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    SquaredError,
    AbsoluteError,
    PseudoHuberError,
    /// `reg:logistic` and `binary:logistic`: the sigmoid of the margin.
    Logistic,
    /// `binary:logitraw`: the margin itself; `base_score` is a margin too.
    LogitRaw,
    /// `count:poisson`, `reg:gamma`, `reg:tweedie`: the exponential of the margin.
    Exp,
}

impl Objective {
    /// The objective for an XGBoost objective name, or `None` when the engine does not support it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "reg:squarederror" | "reg:linear" => Self::SquaredError,
            "reg:absoluteerror" => Self::AbsoluteError,
            "reg:pseudohubererror" => Self::PseudoHuberError,
            "reg:logistic" | "binary:logistic" => Self::Logistic,
            "binary:logitraw" => Self::LogitRaw,
            "count:poisson" | "reg:gamma" | "reg:tweedie" => Self::Exp,
            _ => return None,
        })
    }

    /// `base_score` as a margin, as XGBoost's `ProbToMargin`; `None` when it is out of the domain.
    pub fn base_margin(self, base_score: f32) -> Option<f32> {
        let margin = match self {
            Self::SquaredError | Self::AbsoluteError | Self::PseudoHuberError | Self::LogitRaw => base_score,
            Self::Logistic => {
                if !(base_score > 0.0 && base_score < 1.0) {
                    return None;
                }
                -(1.0f32 / base_score - 1.0f32).ln()
            }
            Self::Exp => {
                if base_score <= 0.0 {
                    return None;
                }
                base_score.ln()
            }
        };
        margin.is_finite().then_some(margin)
    }

    /// The prediction for a summed margin. The sigmoid caps its exponent at 88.7 so `expf` never
    /// overflows, as libxgboost does (checked against 1.6, 2.1 and 3.1 in the version fixtures).
    #[inline]
    pub fn transform(self, margin: f32) -> f32 {
        match self {
            Self::SquaredError | Self::AbsoluteError | Self::PseudoHuberError | Self::LogitRaw => margin,
            Self::Logistic => 1.0f32 / ((-margin).min(88.7f32).exp() + 1.0f32 + 1e-16f32),
            Self::Exp => margin.exp(),
        }
    }
}
