//! Preprocessing: the fitted sklearn ColumnTransformer, replayed from its declarative spec.
//!
//! Raw columns in (a [`Batch`]), the model's feature matrix out. Arithmetic is done in `f64` like numpy
//! and cast to `f32` at the end, as XGBoost does with a float64 array, so features are bit-identical to
//! the Python pipeline's. Knows nothing of HTTP, Kafka or trees.

pub mod spec;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use ndarray::Array2;

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

/// FNV-1a: category names are short, and SipHash's flood resistance buys nothing for maps whose keys
/// come from the bundle, not from requests.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// Category lookup: a linear scan for the few categories most encoders have (faster than hashing
/// a short string), FNV hashing above that.
#[derive(Debug, Clone)]
enum Lookup<V> {
    Few(Vec<(Box<str>, V)>),
    Many(HashMap<String, V, BuildHasherDefault<Fnv>>),
}

/// Up to this many categories are scanned instead of hashed.
const SCAN_AT_MOST: usize = 8;

impl<V> Lookup<V> {
    #[inline]
    fn get(&self, key: &str) -> Option<&V> {
        match self {
            Lookup::Few(entries) => entries.iter().find(|(k, _)| &**k == key).map(|(_, v)| v),
            Lookup::Many(map) => map.get(key),
        }
    }

    fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl<V> FromIterator<(String, V)> for Lookup<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        // Later duplicates win, as with a map.
        let mut map: HashMap<String, V, BuildHasherDefault<Fnv>> = HashMap::default();
        let mut order = Vec::new();
        for (key, value) in iter {
            if map.insert(key.clone(), value).is_none() {
                order.push(key);
            }
        }
        if map.len() > SCAN_AT_MOST {
            return Lookup::Many(map);
        }
        Lookup::Few(
            order
                .into_iter()
                .map(|k| {
                    let v = map.remove(&k).expect("every key was inserted");
                    (k.into_boxed_str(), v)
                })
                .collect(),
        )
    }
}

type FastMap<V> = Lookup<V>;
type FastSet = Lookup<()>;

/// A checked, ready-to-run preprocessing spec.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    spec: Spec,
    blocks: Vec<Block>,
    /// For each feature, the input (its index in `inputs`) it is computed from: what maps a
    /// feature's contribution back to the column a client sent.
    feature_inputs: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Block {
    /// For each column of the block: its index in the batch and its first output feature.
    columns: Vec<(usize, usize)>,
    names: Vec<String>,
    text: Vec<TextStep>,
    encoder: Option<Encoder>,
    numeric: Vec<NumberStep>,
}

#[derive(Debug, Clone)]
enum TextStep {
    Strip,
    KeepOrReplace { keep: FastSet, replacement: String },
    Impute(Vec<String>),
}

#[derive(Debug, Clone)]
enum NumberStep {
    Log1p,
    Standardize {
        mean: Option<Vec<f64>>,
        scale: Option<Vec<f64>>,
    },
    MinMax {
        scale: Vec<f64>,
        min: Vec<f64>,
        clip: Option<[f64; 2]>,
    },
    Impute(Vec<f64>),
}

#[derive(Debug, Clone)]
enum Encoder {
    /// Per column: category → output offset within the column's features (`None` = the dropped one).
    OneHot {
        lookup: Vec<FastMap<Option<usize>>>,
        refuse_unknown: bool,
    },
    Ordinal {
        lookup: Vec<FastMap<usize>>,
        unknown: Option<f64>,
    },
    Map {
        maps: Vec<FastMap<f64>>,
        default: f64,
    },
}

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
        let mut blocks = Vec::with_capacity(spec.blocks.len());
        let mut feature_inputs = Vec::with_capacity(spec.num_features);
        let mut offset = 0;
        for block in &spec.blocks {
            let compiled = compile_block(&spec.inputs, block, offset)
                .map_err(|SpecError(e)| spec_error(format!("block {:?}: {e}", block.name)))?;
            offset += block.width;
            // A column's features run from its first to the next column's first, or the block's end.
            for (j, &(input, first)) in compiled.columns.iter().enumerate() {
                let end = compiled.columns.get(j + 1).map_or(offset, |&(_, next)| next);
                feature_inputs.extend(std::iter::repeat_n(input, end.saturating_sub(first)));
            }
            blocks.push(compiled);
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
            blocks,
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
        self.check_shape(batch)?;
        let width = self.spec.num_features;
        // One-hot cells not set to 1.0 keep this value: a sparse output has them missing, not zero.
        let unset = if self.spec.zeros_are_missing { f32::NAN } else { 0.0 };
        let mut out = vec![unset; batch.rows * width];
        for block in &self.blocks {
            for (j, &(input, first)) in block.columns.iter().enumerate() {
                let name = &block.names[j];
                match &batch.columns[input] {
                    Column::Number(values) => {
                        for (row, &x) in values.iter().enumerate() {
                            let x = block.numbers(j, x).map_err(|e| e.at(name, row))?;
                            out[row * width + first] = self.feature(x);
                        }
                    }
                    Column::Text(values) => {
                        for (row, value) in values.iter().enumerate() {
                            let text = block.text(j, value.as_deref());
                            let cells = &mut out[row * width + first..];
                            if block.encode(j, text, cells, self).map_err(|e| e.at(name, row))? {
                                if let Some(count) = unknown.get_mut(input) {
                                    *count += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(Array2::from_shape_vec((batch.rows, width), out).expect("rows × width values"))
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

impl Block {
    fn text<'a>(&'a self, j: usize, mut value: Option<&'a str>) -> Option<&'a str> {
        for step in &self.text {
            value = match step {
                TextStep::Strip => value.map(python_strip),
                TextStep::KeepOrReplace { keep, replacement } => match value {
                    Some(s) if keep.contains(s) => Some(s),
                    _ => Some(replacement.as_str()),
                },
                TextStep::Impute(fill) => value.or(Some(fill[j].as_str())),
            };
        }
        value
    }

    fn numbers(&self, j: usize, mut x: f64) -> Result<f64, StepError> {
        for step in &self.numeric {
            // sklearn's scalers and imputers refuse infinities (NaN passes as missing).
            if x.is_infinite() && !matches!(step, NumberStep::Log1p) {
                return Err(StepError(
                    InputErrorKind::OutOfRange,
                    format!("{x} is not finite at this step"),
                ));
            }
            x = match step {
                NumberStep::Log1p => x.ln_1p(),
                NumberStep::Standardize { mean, scale } => {
                    let centred = mean.as_ref().map_or(x, |m| x - m[j]);
                    scale.as_ref().map_or(centred, |s| centred / s[j])
                }
                NumberStep::MinMax { scale, min, clip } => {
                    let y = x * scale[j] + min[j];
                    match clip {
                        // np.clip keeps NaN.
                        Some([lo, hi]) if !y.is_nan() => y.max(*lo).min(*hi),
                        _ => y,
                    }
                }
                NumberStep::Impute(fill) => {
                    if x.is_nan() {
                        fill[j]
                    } else {
                        x
                    }
                }
            };
        }
        Ok(x)
    }

    /// Encodes one text value into `cells`; `Ok(true)` when the value was not a known category
    /// (null included) and the encoder's fallback was used.
    fn encode(&self, j: usize, text: Option<&str>, cells: &mut [f32], pre: &Preprocessor) -> Result<bool, StepError> {
        let unknown = |text: Option<&str>| match text {
            Some(s) => format!("unknown category {s:?}"),
            None => "missing value where a category is required".to_owned(),
        };
        let (x, fell_back) = match self.encoder.as_ref() {
            Some(Encoder::OneHot { lookup, refuse_unknown }) => {
                return match text.and_then(|s| lookup[j].get(s)) {
                    Some(Some(offset)) => {
                        cells[*offset] = 1.0;
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
            }) => match text.and_then(|s| lookup[j].get(s)) {
                Some(&index) => (index as f64, false),
                None => (
                    fallback.ok_or_else(|| StepError(InputErrorKind::UnknownCategory, unknown(text)))?,
                    true,
                ),
            },
            Some(Encoder::Map { maps, default }) => match text.and_then(|s| maps[j].get(s)) {
                Some(&value) => (value, false),
                None => (*default, true),
            },
            None => return Err(StepError(InputErrorKind::Type, "text reached a numeric step".into())),
        };
        let x = self.numbers(j, x)?;
        cells[0] = pre.feature(x);
        Ok(fell_back)
    }
}

fn compile_block(inputs: &[InputSpec], block: &spec::BlockSpec, offset: usize) -> Result<Block, SpecError> {
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
    let mut text = Vec::new();
    let mut encoder = None;
    let mut numeric = Vec::new();
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
            StepSpec::Strip => text.push(TextStep::Strip),
            StepSpec::KeepOrReplace { keep, replacement } => text.push(TextStep::KeepOrReplace {
                keep: keep.iter().map(|k| (k.clone(), ())).collect(),
                replacement: replacement.clone(),
            }),
            StepSpec::Impute { values } => {
                per_column("impute values", values.len())?;
                if current == ColumnKind::String {
                    let fill = values.iter().map(|v| v.as_str().map(str::to_owned));
                    let fill: Option<Vec<String>> = fill.collect();
                    text.push(TextStep::Impute(
                        fill.ok_or_else(|| spec_error("text impute values must be strings"))?,
                    ));
                } else {
                    let fill: Option<Vec<f64>> = values.iter().map(serde_json::Value::as_f64).collect();
                    numeric.push(NumberStep::Impute(
                        fill.ok_or_else(|| spec_error("number impute values must be numbers"))?,
                    ));
                }
            }
            StepSpec::Log1p => numeric.push(NumberStep::Log1p),
            StepSpec::Standardize { mean, scale } => {
                for (what, v) in [("mean", mean), ("scale", scale)] {
                    if let Some(v) = v {
                        per_column(what, v.len())?;
                    }
                }
                numeric.push(NumberStep::Standardize {
                    mean: mean.clone(),
                    scale: scale.clone(),
                });
            }
            StepSpec::MinMax {
                scale,
                min,
                clip,
                clip_range,
            } => {
                per_column("scale", scale.len())?;
                per_column("min", min.len())?;
                numeric.push(NumberStep::MinMax {
                    scale: scale.clone(),
                    min: min.clone(),
                    clip: clip.then_some(*clip_range),
                });
            }
            StepSpec::OneHot {
                categories,
                drop,
                unknown,
            } => {
                per_column("categories", categories.len())?;
                per_column("drop", drop.len())?;
                let mut lookup = Vec::with_capacity(n);
                width = 0;
                for (cats, dropped) in categories.iter().zip(drop) {
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
                    lookup.push(slots.into_iter().collect());
                }
                encoder = Some(Encoder::OneHot {
                    lookup,
                    refuse_unknown: *unknown == Unknown::Error,
                });
                multi_output = true;
                current = ColumnKind::Number;
            }
            StepSpec::Ordinal {
                categories,
                unknown,
                unknown_value,
            } => {
                per_column("categories", categories.len())?;
                let lookup = categories
                    .iter()
                    .map(|cats| cats.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect())
                    .collect();
                let unknown = match unknown {
                    Unknown::Error => None,
                    _ => Some(unknown_value.unwrap_or(f64::NAN)),
                };
                encoder = Some(Encoder::Ordinal { lookup, unknown });
                current = ColumnKind::Number;
            }
            StepSpec::CategoryMap { maps, default } => {
                per_column("maps", maps.len())?;
                let maps = maps
                    .iter()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
                    .collect();
                encoder = Some(Encoder::Map {
                    maps,
                    default: *default,
                });
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
    let mut columns = Vec::with_capacity(n);
    let mut first = offset;
    for (j, &index) in indices.iter().enumerate() {
        columns.push((index, first));
        first += match &encoder {
            Some(Encoder::OneHot { .. }) => column_widths[j],
            _ => 1,
        };
    }
    Ok(Block {
        columns,
        names: block.columns.clone(),
        text,
        encoder,
        numeric,
    })
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

    #[test]
    fn lookups_find_the_same_values_scanned_or_hashed() {
        for size in [1, SCAN_AT_MOST, SCAN_AT_MOST + 1, 40] {
            let lookup: Lookup<usize> = (0..size).map(|i| (format!("c{i}"), i)).collect();
            assert_eq!(matches!(lookup, Lookup::Few(_)), size <= SCAN_AT_MOST);
            for i in 0..size {
                assert_eq!(lookup.get(&format!("c{i}")), Some(&i));
            }
            assert_eq!(lookup.get("other"), None);
            assert!(!lookup.contains("c"));
        }
        let duplicates: Lookup<u8> = [("a".to_owned(), 1), ("a".to_owned(), 2)].into_iter().collect();
        assert_eq!(duplicates.get("a"), Some(&2));
    }
}
