//! Preprocessing: the fitted sklearn ColumnTransformer, replayed from its declarative spec.
//!
//! Raw columns in (a [`Batch`]), the model's feature matrix out. Arithmetic is done in `f64` like numpy
//! and cast to `f32` at the end, as XGBoost does with a float64 array, so features are bit-identical to
//! the Python pipeline's. Knows nothing of HTTP, Kafka or trees.

mod lookup;
pub mod spec;

use std::collections::HashSet;

use ndarray::{Array2, ShapeBuilder};

use lookup::Lookup;
pub use spec::{ColumnKind, InputSpec, Spec, StepSpec, Unknown};

/// The values of one input column, one per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers; NaN is a missing value.
    Number(Vec<f64>),
    /// Text; `None` is a missing value.
    Text(Vec<Option<String>>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Number(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch of rows as typed columns, in the order of [`Preprocessor::inputs`].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    rows: usize,
    columns: Vec<Column>,
}

impl Batch {
    /// A batch from columns that all hold `rows` values (checked by [`Preprocessor::transform`]).
    pub fn new(rows: usize, columns: Vec<Column>) -> Self {
        Self { rows, columns }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

/// The kinds of bad input, each with its own HTTP status and `error_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputErrorKind {
    /// The body is not valid JSON or CSV.
    Syntax,
    /// The body has no rows.
    Empty,
    /// A required column is absent.
    MissingColumn,
    /// Columns of different lengths.
    Ragged,
    /// A value of the wrong type (text in a number column, say).
    Type,
    /// A category the model refuses (its encoder was fitted with `handle_unknown="error"`).
    UnknownCategory,
    /// A value the pipeline refuses: infinite, or too large.
    OutOfRange,
    /// More rows than the configured limit.
    TooManyRows,
}

impl InputErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::Empty => "empty",
            Self::MissingColumn => "missing_column",
            Self::Ragged => "ragged",
            Self::Type => "type",
            Self::UnknownCategory => "unknown_category",
            Self::OutOfRange => "out_of_range",
            Self::TooManyRows => "too_many_rows",
        }
    }
}

/// A batch the model cannot score, naming the column and row (counted from 0) where they apply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub kind: InputErrorKind,
    pub column: Option<String>,
    pub row: Option<usize>,
    pub message: String,
}

impl InputError {
    pub fn new(kind: InputErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            column: None,
            row: None,
            message: message.into(),
        }
    }

    /// The same error said of row `row`: a row scored on its own is row 0 of its batch, and this
    /// puts back where it stands in the file.
    pub fn at_row(self, row: usize) -> Self {
        let Some(old) = self.row else { return self };
        let Some(column) = &self.column else {
            return Self { row: Some(row), ..self };
        };
        let prefix = format!("column {column:?}, row {old}: ");
        match self.message.strip_prefix(&prefix) {
            Some(what) => Self::at(self.kind, column, Some(row), what),
            None => self,
        }
    }

    pub fn at(kind: InputErrorKind, column: &str, row: Option<usize>, what: impl std::fmt::Display) -> Self {
        let message = match row {
            Some(row) => format!("column {column:?}, row {row}: {what}"),
            None => format!("column {column:?}: {what}"),
        };
        Self {
            kind,
            column: Some(column.to_owned()),
            row,
            message,
        }
    }
}

/// The spec is inconsistent; the bundle loader adds the file's path.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(String);

fn spec_error(message: impl Into<String>) -> SpecError {
    SpecError(message.into())
}

/// A checked, ready-to-run preprocessing spec.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    spec: Spec,
    /// One per column of every block, in block order: the order in which a batch's first bad
    /// value is found.
    programs: Vec<Program>,
    /// For each feature, the input (its index in `inputs`) it is computed from: what maps a
    /// feature's contribution back to the column a client sent.
    feature_inputs: Vec<usize>,
}

/// One block column's steps with that column's parameters picked out at load, so that scoring a
/// value neither indexes per-column lists nor looks at the block.
#[derive(Debug, Clone)]
struct Program {
    /// The column's index in the batch.
    input: usize,
    name: String,
    /// Its first output feature.
    first: usize,
    text: Vec<TextStep>,
    encoder: Option<Encoder>,
    numeric: Vec<NumberStep>,
}

#[derive(Debug, Clone)]
enum TextStep {
    Strip,
    KeepOrReplace { keep: Lookup<()>, replacement: String },
    Impute(String),
}

#[derive(Debug, Clone)]
enum NumberStep {
    Log1p,
    Standardize {
        mean: Option<f64>,
        scale: Option<f64>,
    },
    MinMax {
        scale: f64,
        min: f64,
        clip: Option<[f64; 2]>,
    },
    Impute(f64),
}

#[derive(Debug, Clone)]
enum Encoder {
    /// Category → output offset within the column's features (`None` = the dropped one).
    OneHot {
        lookup: Lookup<Option<usize>>,
        refuse_unknown: bool,
    },
    Ordinal {
        lookup: Lookup<usize>,
        unknown: Option<f64>,
    },
    Map {
        map: Lookup<f64>,
        default: f64,
    },
}

/// Number columns run step by step over this many values at a time (they stay in L1, and each
/// step's loop over them vectorises).
const CHUNK: usize = 256;

impl Preprocessor {
    /// Checks a spec: every column exists and has the right type for its steps, every parameter list
    /// has one entry per column, and the widths add up to `num_features`.
    pub fn new(spec: Spec) -> Result<Self, SpecError> {
        if spec.format != 1 {
            return Err(spec_error(format!(
                "format {} is not supported (expected 1)",
                spec.format
            )));
        }
        let mut seen = HashSet::new();
        for input in &spec.inputs {
            if !seen.insert(input.name.as_str()) {
                return Err(spec_error(format!("input {:?} is listed twice", input.name)));
            }
        }
        let mut programs: Vec<Program> = Vec::new();
        let mut feature_inputs = Vec::with_capacity(spec.num_features);
        let mut offset = 0;
        for block in &spec.blocks {
            let compiled = compile_block(&spec.inputs, block, offset)
                .map_err(|SpecError(e)| spec_error(format!("block {:?}: {e}", block.name)))?;
            offset += block.width;
            // A column's features run from its first to the next column's first, or the block's end.
            for (j, program) in compiled.iter().enumerate() {
                let end = compiled.get(j + 1).map_or(offset, |next| next.first);
                feature_inputs.extend(std::iter::repeat_n(program.input, end.saturating_sub(program.first)));
            }
            programs.extend(compiled);
        }
        if offset != spec.num_features || spec.feature_names.len() != spec.num_features {
            return Err(spec_error(format!(
                "the blocks write {offset} features, num_features says {} and feature_names lists {}",
                spec.num_features,
                spec.feature_names.len()
            )));
        }
        Ok(Self {
            spec,
            programs,
            feature_inputs,
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The columns a batch must carry, in batch order.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.spec.inputs
    }

    pub fn num_features(&self) -> usize {
        self.spec.num_features
    }

    /// For each feature, the index in [`Self::inputs`] of the column it is computed from.
    pub fn feature_inputs(&self) -> &[usize] {
        &self.feature_inputs
    }

    /// The feature matrix for `batch` (rows × `num_features`), or the first value the Python
    /// pipeline would refuse.
    pub fn transform(&self, batch: &Batch) -> Result<Array2<f32>, InputError> {
        self.transform_counting(batch, &mut [])
    }

    /// As [`Self::transform`], also adding to `unknown[i]` the values of input `i` that were not a
    /// known category (nulls included) and took the encoder's fallback. `unknown` may be empty.
    pub fn transform_counting(&self, batch: &Batch, unknown: &mut [u64]) -> Result<Array2<f32>, InputError> {
        let out = self.transform_into(batch, unknown, false)?;
        Ok(Array2::from_shape_vec((batch.rows, self.spec.num_features), out).expect("rows × width values"))
    }

    /// As [`Self::transform_counting`], the same values laid out column by column (Fortran order):
    /// what the AVX-512 walk reads sixteen rows of at a time, with loads rather than gathers.
    pub fn transform_counting_by_columns(&self, batch: &Batch, unknown: &mut [u64]) -> Result<Array2<f32>, InputError> {
        let out = self.transform_into(batch, unknown, true)?;
        let shape = (batch.rows, self.spec.num_features).f();
        Ok(Array2::from_shape_vec(shape, out).expect("rows × width values"))
    }

    /// The features of `batch`, row after row or (`by_columns`) column after column.
    fn transform_into(&self, batch: &Batch, unknown: &mut [u64], by_columns: bool) -> Result<Vec<f32>, InputError> {
        self.check_shape(batch)?;
        let (rows, width) = (batch.rows, self.spec.num_features);
        // Where feature `j` of row `row` goes.
        let cell = |row: usize, j: usize| if by_columns { j * rows + row } else { row * width + j };
        // One-hot cells not set to 1.0 keep this value: a sparse output has them missing, not zero.
        let unset = if self.spec.zeros_are_missing { f32::NAN } else { 0.0 };
        let mut out = vec![unset; rows * width];
        let mut chunk = [0f64; CHUNK];
        for program in &self.programs {
            match &batch.columns[program.input] {
                Column::Number(values) => {
                    for (n, values) in values.chunks(CHUNK).enumerate() {
                        let xs = &mut chunk[..values.len()];
                        program
                            .numbers(values, xs)
                            .map_err(|(i, e)| e.at(&program.name, n * CHUNK + i))?;
                        let start = cell(n * CHUNK, program.first);
                        if by_columns {
                            for (cell, &x) in out[start..][..xs.len()].iter_mut().zip(xs.iter()) {
                                *cell = self.feature(x);
                            }
                        } else {
                            for (cell, &x) in out[start..].iter_mut().step_by(width).zip(xs.iter()) {
                                *cell = self.feature(x);
                            }
                        }
                    }
                }
                Column::Text(values) => {
                    for (row, value) in values.iter().enumerate() {
                        let text = program.text(value.as_deref());
                        let set = |j: usize, x: f32| out[cell(row, program.first + j)] = x;
                        if program.encode(text, set, self).map_err(|e| e.at(&program.name, row))? {
                            if let Some(count) = unknown.get_mut(program.input) {
                                *count += 1;
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn check_shape(&self, batch: &Batch) -> Result<(), InputError> {
        if batch.columns.len() != self.spec.inputs.len() {
            return Err(InputError::new(
                InputErrorKind::MissingColumn,
                format!(
                    "expected {} columns, got {}",
                    self.spec.inputs.len(),
                    batch.columns.len()
                ),
            ));
        }
        for (input, column) in self.spec.inputs.iter().zip(&batch.columns) {
            let kind = match column {
                Column::Number(_) => ColumnKind::Number,
                Column::Text(_) => ColumnKind::String,
            };
            if kind != input.kind {
                return Err(InputError::at(
                    InputErrorKind::Type,
                    &input.name,
                    None,
                    "wrong column type",
                ));
            }
            if column.len() != batch.rows {
                return Err(InputError::at(
                    InputErrorKind::Ragged,
                    &input.name,
                    None,
                    format!("has {} values, expected {}", column.len(), batch.rows),
                ));
            }
        }
        Ok(())
    }

    #[inline]
    fn feature(&self, x: f64) -> f32 {
        if self.spec.zeros_are_missing && x == 0.0 {
            f32::NAN
        } else {
            x as f32
        }
    }
}

/// A refusal found while running a step, before the column and row are known.
struct StepError(InputErrorKind, String);

impl StepError {
    fn at(self, column: &str, row: usize) -> InputError {
        InputError::at(self.0, column, Some(row), self.1)
    }
}

/// Python's `str.isspace`: Unicode White_Space plus the ASCII separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`; most values have no surrounding whitespace and return at once.
fn python_strip(s: &str) -> &str {
    // Printable ASCII at both ends cannot be whitespace.
    let plain = |b: &u8| (b'!'..=b'~').contains(b);
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) if plain(first) && plain(last) => s,
        _ => s.trim_matches(is_python_space),
    }
}

impl Program {
    fn text<'a>(&'a self, mut value: Option<&'a str>) -> Option<&'a str> {
        for step in &self.text {
            value = match step {
                TextStep::Strip => value.map(python_strip),
                TextStep::KeepOrReplace { keep, replacement } => match value {
                    Some(s) if keep.contains(s) => Some(s),
                    _ => Some(replacement.as_str()),
                },
                TextStep::Impute(fill) => value.or(Some(fill.as_str())),
            };
        }
        value
    }

    /// Runs the number steps over `values` into `xs` (as long), step by step. Or the first value a
    /// step refuses, with its index, found by running the values one by one as the definition
    /// ([`Self::number`]) does.
    fn numbers(&self, values: &[f64], xs: &mut [f64]) -> Result<(), (usize, StepError)> {
        xs.copy_from_slice(values);
        for step in &self.numeric {
            if refuses_infinity(step) && xs.iter().any(|x| x.is_infinite()) {
                for (i, (x, &value)) in xs.iter_mut().zip(values).enumerate() {
                    *x = self.number(value).map_err(|e| (i, e))?;
                }
                return Ok(());
            }
            // The step is the same for every value, so its match is hoisted out of the loop.
            xs.iter_mut().for_each(|x| *x = step.apply(*x));
        }
        Ok(())
    }

    /// One value through the number steps: the definition [`Self::numbers`] follows.
    fn number(&self, mut x: f64) -> Result<f64, StepError> {
        for step in &self.numeric {
            if refuses_infinity(step) && x.is_infinite() {
                return Err(StepError(
                    InputErrorKind::OutOfRange,
                    format!("{x} is not finite at this step"),
                ));
            }
            x = step.apply(x);
        }
        Ok(x)
    }

    /// Encodes one text value, calling `set(j, value)` for the program's `j`th feature; `Ok(true)`
    /// when the value was not a known category (null included) and the encoder's fallback was used.
    fn encode(
        &self,
        text: Option<&str>,
        mut set: impl FnMut(usize, f32),
        pre: &Preprocessor,
    ) -> Result<bool, StepError> {
        let unknown = |text: Option<&str>| match text {
            Some(s) => format!("unknown category {s:?}"),
            None => "missing value where a category is required".to_owned(),
        };
        let (x, fell_back) = match self.encoder.as_ref() {
            Some(Encoder::OneHot { lookup, refuse_unknown }) => {
                return match text.and_then(|s| lookup.get(s)) {
                    Some(Some(offset)) => {
                        set(*offset, 1.0);
                        Ok(false)
                    }
                    Some(None) => Ok(false),
                    None if *refuse_unknown => Err(StepError(InputErrorKind::UnknownCategory, unknown(text))),
                    None => Ok(true),
                };
            }
            Some(Encoder::Ordinal {
                lookup,
                unknown: fallback,
            }) => match text.and_then(|s| lookup.get(s)) {
                Some(&index) => (index as f64, false),
                None => (
                    fallback.ok_or_else(|| StepError(InputErrorKind::UnknownCategory, unknown(text)))?,
                    true,
                ),
            },
            Some(Encoder::Map { map, default }) => match text.and_then(|s| map.get(s)) {
                Some(&value) => (value, false),
                None => (*default, true),
            },
            None => return Err(StepError(InputErrorKind::Type, "text reached a numeric step".into())),
        };
        let x = self.number(x)?;
        set(0, pre.feature(x));
        Ok(fell_back)
    }
}

/// sklearn's scalers and imputers refuse infinities (NaN passes as missing); log1p takes them.
fn refuses_infinity(step: &NumberStep) -> bool {
    !matches!(step, NumberStep::Log1p)
}

impl NumberStep {
    fn apply(&self, x: f64) -> f64 {
        match *self {
            NumberStep::Log1p => x.ln_1p(),
            NumberStep::Standardize { mean, scale } => {
                let centred = mean.map_or(x, |m| x - m);
                scale.map_or(centred, |s| centred / s)
            }
            NumberStep::MinMax { scale, min, clip } => {
                let y = x * scale + min;
                match clip {
                    // np.clip keeps NaN.
                    Some([lo, hi]) if !y.is_nan() => y.max(lo).min(hi),
                    _ => y,
                }
            }
            NumberStep::Impute(fill) => {
                if x.is_nan() {
                    fill
                } else {
                    x
                }
            }
        }
    }
}

fn compile_block(inputs: &[InputSpec], block: &spec::BlockSpec, offset: usize) -> Result<Vec<Program>, SpecError> {
    let n = block.columns.len();
    if n == 0 {
        return Err(spec_error("no columns"));
    }
    let mut kind = None;
    let mut indices = Vec::with_capacity(n);
    for name in &block.columns {
        let index = inputs
            .iter()
            .position(|i| &i.name == name)
            .ok_or_else(|| spec_error(format!("column {name:?} is not an input")))?;
        if kind.is_some_and(|k| k != inputs[index].kind) {
            return Err(spec_error("mixes number and string columns"));
        }
        kind = inputs[index].kind.into();
        indices.push(index);
    }
    let per_column = |what: &str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(spec_error(format!("{what} has {len} entries for {n} columns")))
        }
    };

    let mut current = kind.expect("at least one column");
    // Each column's program, its steps added in block order as each step is checked.
    let mut programs: Vec<Program> = indices
        .iter()
        .zip(&block.columns)
        .map(|(&input, name)| Program {
            input,
            name: name.clone(),
            first: 0,
            text: Vec::new(),
            encoder: None,
            numeric: Vec::new(),
        })
        .collect();
    let mut width = n;
    let mut multi_output = false;
    // Features each column writes, when a one-hot encoder makes it more than one.
    let mut column_widths = Vec::new();
    for step in &block.steps {
        if multi_output {
            return Err(spec_error("a step follows a one-hot encoder"));
        }
        let needs = match step {
            StepSpec::Strip | StepSpec::KeepOrReplace { .. } => ColumnKind::String,
            StepSpec::OneHot { .. } | StepSpec::Ordinal { .. } | StepSpec::CategoryMap { .. } => ColumnKind::String,
            StepSpec::Impute { .. } => current,
            _ => ColumnKind::Number,
        };
        if needs != current {
            return Err(spec_error(format!(
                "step {step:?} needs {needs:?} values, has {current:?}"
            )));
        }
        match step {
            StepSpec::Strip => programs.iter_mut().for_each(|p| p.text.push(TextStep::Strip)),
            StepSpec::KeepOrReplace { keep, replacement } => {
                let keep: Lookup<()> = keep.iter().map(|k| (k.clone(), ())).collect();
                for p in &mut programs {
                    p.text.push(TextStep::KeepOrReplace {
                        keep: keep.clone(),
                        replacement: replacement.clone(),
                    });
                }
            }
            StepSpec::Impute { values } => {
                per_column("impute values", values.len())?;
                if current == ColumnKind::String {
                    let fill: Option<Vec<String>> = values.iter().map(|v| v.as_str().map(str::to_owned)).collect();
                    let fill = fill.ok_or_else(|| spec_error("text impute values must be strings"))?;
                    for (p, fill) in programs.iter_mut().zip(fill) {
                        p.text.push(TextStep::Impute(fill));
                    }
                } else {
                    let fill: Option<Vec<f64>> = values.iter().map(serde_json::Value::as_f64).collect();
                    let fill = fill.ok_or_else(|| spec_error("number impute values must be numbers"))?;
                    for (p, fill) in programs.iter_mut().zip(fill) {
                        p.numeric.push(NumberStep::Impute(fill));
                    }
                }
            }
            StepSpec::Log1p => programs.iter_mut().for_each(|p| p.numeric.push(NumberStep::Log1p)),
            StepSpec::Standardize { mean, scale } => {
                for (what, v) in [("mean", mean), ("scale", scale)] {
                    if let Some(v) = v {
                        per_column(what, v.len())?;
                    }
                }
                for (j, p) in programs.iter_mut().enumerate() {
                    p.numeric.push(NumberStep::Standardize {
                        mean: mean.as_ref().map(|m| m[j]),
                        scale: scale.as_ref().map(|s| s[j]),
                    });
                }
            }
            StepSpec::MinMax {
                scale,
                min,
                clip,
                clip_range,
            } => {
                per_column("scale", scale.len())?;
                per_column("min", min.len())?;
                for (j, p) in programs.iter_mut().enumerate() {
                    p.numeric.push(NumberStep::MinMax {
                        scale: scale[j],
                        min: min[j],
                        clip: clip.then_some(*clip_range),
                    });
                }
            }
            StepSpec::OneHot {
                categories,
                drop,
                unknown,
            } => {
                per_column("categories", categories.len())?;
                per_column("drop", drop.len())?;
                width = 0;
                for ((cats, dropped), p) in categories.iter().zip(drop).zip(&mut programs) {
                    let mut next = 0;
                    let mut slots = Vec::with_capacity(cats.len());
                    for (i, category) in cats.iter().enumerate() {
                        let slot = if Some(i) == *dropped {
                            None
                        } else {
                            next += 1;
                            Some(next - 1)
                        };
                        slots.push((category.clone(), slot));
                    }
                    width += next;
                    column_widths.push(next);
                    p.encoder = Some(Encoder::OneHot {
                        lookup: slots.into_iter().collect(),
                        refuse_unknown: *unknown == Unknown::Error,
                    });
                }
                multi_output = true;
                current = ColumnKind::Number;
            }
            StepSpec::Ordinal {
                categories,
                unknown,
                unknown_value,
            } => {
                per_column("categories", categories.len())?;
                let unknown = match unknown {
                    Unknown::Error => None,
                    _ => Some(unknown_value.unwrap_or(f64::NAN)),
                };
                for (cats, p) in categories.iter().zip(&mut programs) {
                    p.encoder = Some(Encoder::Ordinal {
                        lookup: cats.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect(),
                        unknown,
                    });
                }
                current = ColumnKind::Number;
            }
            StepSpec::CategoryMap { maps, default } => {
                per_column("maps", maps.len())?;
                for (map, p) in maps.iter().zip(&mut programs) {
                    p.encoder = Some(Encoder::Map {
                        map: map.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                        default: *default,
                    });
                }
                current = ColumnKind::Number;
            }
        }
    }
    if current != ColumnKind::Number {
        return Err(spec_error("ends with text; an encoder must finish a string block"));
    }
    if width != block.width || block.feature_names.len() != width {
        return Err(spec_error(format!(
            "writes {width} features but says width {} with {} names",
            block.width,
            block.feature_names.len()
        )));
    }
    // The first output feature of each column.
    let mut first = offset;
    for (j, p) in programs.iter_mut().enumerate() {
        p.first = first;
        first += column_widths.get(j).copied().unwrap_or(1);
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_matches_python_str_strip() {
        // Each expectation is what CPython's str.strip() returns.
        for (input, stripped) in [
            ("Focus", "Focus"),
            (" Focus", "Focus"),
            ("Focus\t\n", "Focus"),
            ("\u{1c}Focus\u{1f}", "Focus"),
            ("\u{a0}Ka\u{2003}", "Ka"),
            ("\u{1}x", "\u{1}x"),
            ("   ", ""),
            ("", ""),
            ("ÄÖ", "ÄÖ"),
        ] {
            assert_eq!(python_strip(input), stripped, "{input:?}");
        }
    }

    /// Two number columns through every number step, each of which refuses infinities but log1p.
    fn numbers_spec() -> Preprocessor {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "format": 1,
            "inputs": [{"name": "a", "type": "number"}, {"name": "b", "type": "number"}],
            "blocks": [{
                "name": "all", "columns": ["a", "b"], "width": 2, "feature_names": ["a", "b"],
                "steps": [
                    {"op": "impute", "values": [1.5, -2.0]},
                    {"op": "log1p"},
                    {"op": "standardize", "mean": [0.25, 1.0], "scale": [3.0, 0.5]},
                    {"op": "min_max", "scale": [2.0, 0.5], "min": [-1.0, 0.1], "clip": true,
                     "clip_range": [-3.0, 3.0]}
                ]
            }],
            "num_features": 2,
            "feature_names": ["a", "b"]
        }))
        .unwrap();
        Preprocessor::new(spec).unwrap()
    }

    /// Values that pass, and values that each step refuses: infinity at the imputer, -1 (log1p
    /// makes it -inf) at the scaler, 1e308 nowhere (log1p tames it), -2 (log1p makes it NaN,
    /// which passes as missing).
    const VALUES: [f64; 11] = [
        0.0,
        3.0,
        -0.5,
        7.25,
        1e-300,
        1e308,
        -2.0,
        f64::NAN,
        -1.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];

    proptest::proptest! {
        /// Number columns run step by step over chunks of rows. They agree with the definition,
        /// each value alone through `Program::number`, on every feature's bits and, when values are
        /// refused, on the first one (column a before column b, then the lowest row) and its
        /// message, wherever the refused values sit in a chunk.
        #[test]
        fn chunked_number_steps_agree_with_one_value_at_a_time(
            rows in proptest::sample::select(vec![1usize, 7, 255, 256, 257, 600]),
            seed in 0u64..u64::MAX,
            refused in 0usize..3,
        ) {
            let pre = numbers_spec();
            let mut state = seed | 1;
            let mut next = move |n: usize| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % n as u64) as usize
            };
            let mut columns = [vec![0.0; rows], vec![0.0; rows]];
            for value in columns.iter_mut().flatten() {
                *value = match next(2) {
                    0 => VALUES[next(8)],
                    _ => next(1 << 20) as f64 / 7.0 - 3.0,
                };
            }
            for _ in 0..refused {
                columns[next(2)][next(rows)] = VALUES[8 + next(3)];
            }
            let mut expected = Ok(Vec::new());
            'columns: for (program, values) in pre.programs.iter().zip(&columns) {
                let mut features = Vec::new();
                for (row, &x) in values.iter().enumerate() {
                    match program.number(x) {
                        Ok(x) => features.push(pre.feature(x).to_bits()),
                        Err(e) => {
                            expected = Err(e.at(&program.name, row));
                            break 'columns;
                        }
                    }
                }
                if let Ok(all) = &mut expected {
                    all.push(features);
                }
            }
            // The steps' values before the cast to f32, which would hide a last bit's difference.
            for (program, values) in pre.programs.iter().zip(&columns) {
                let mut xs = [0f64; CHUNK];
                for (n, values) in values.chunks(CHUNK).enumerate() {
                    let xs = &mut xs[..values.len()];
                    let one_by_one: Result<Vec<u64>, usize> = values
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| program.number(x).map(f64::to_bits).map_err(|_| i))
                        .collect();
                    let chunked = program.numbers(values, xs).map(|()| xs.iter().map(|x| x.to_bits()).collect());
                    proptest::prop_assert_eq!(chunked.map_err(|(i, _)| i), one_by_one, "chunk {}", n);
                }
            }
            let batch = Batch::new(rows, columns.into_iter().map(Column::Number).collect());
            let got = pre.transform(&batch).map(|features| {
                features.columns().into_iter().map(|c| c.iter().map(|x| x.to_bits()).collect()).collect::<Vec<Vec<u32>>>()
            });
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
