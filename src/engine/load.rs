//! Reads XGBoost's JSON and UBJSON model files into a flat `Forest`, refusing what it cannot
//! reproduce exactly (dart, gblinear, categorical splits, vector leaves, multi-output models).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::objective::Objective;
use super::{ubjson, Forest, ForestInfo, Node, TreeRef};

/// Why a model file was refused. The bundle loader adds the file's path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid XGBoost JSON model: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a valid XGBoost UBJSON model: {0}")]
    Ubjson(#[from] ubjson::UbjsonError),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("invalid model: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct ModelFile {
    #[serde(default)]
    version: Vec<u32>,
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    attributes: HashMap<String, Value>,
    gradient_booster: Value,
    learner_model_param: HashMap<String, Value>,
    objective: ObjectiveSection,
}

#[derive(Deserialize)]
struct ObjectiveSection {
    name: String,
}

#[derive(Deserialize)]
struct GbTreeModel {
    gbtree_model_param: HashMap<String, Value>,
    tree_info: Vec<i64>,
    trees: Vec<Tree>,
}

#[derive(Deserialize)]
struct Tree {
    tree_param: HashMap<String, Value>,
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<i64>,
    /// `None` where XGBoost wrote `NaN` (1.6 does for categorical splits).
    split_conditions: Vec<Option<f32>>,
    default_left: Vec<Flag>,
    #[serde(default)]
    split_type: Vec<i64>,
    /// Each node's cover (the training rows' hessian sum): only contributions read it.
    #[serde(default)]
    sum_hessian: Vec<Option<f32>>,
}

/// `default_left` is written as integers by some versions and booleans by others.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Int(i64),
}

impl Flag {
    fn is_set(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Int(i) => *i != 0,
        }
    }
}

fn unsupported(reason: impl Into<String>) -> LoadError {
    LoadError::Unsupported(reason.into())
}

fn invalid(reason: impl Into<String>) -> LoadError {
    LoadError::Invalid(reason.into())
}

/// XGBoost writes most scalars as strings ("12", "5E-1", "[5E-1]"); accept numbers too.
fn scalar(map: &HashMap<String, Value>, key: &str) -> Result<Option<String>, LoadError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(invalid(format!("{key} should be a number, found {other}"))),
    }
}

fn count(map: &HashMap<String, Value>, key: &str) -> Result<Option<usize>, LoadError> {
    scalar(map, key)?
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| invalid(format!("{key} = {s:?} is not a count")))
        })
        .transpose()
}

/// Parses `base_score` in both forms: `"5E-1"` (XGBoost < 3) and `"[5E-1]"` (3.x, a vector).
fn base_score(text: &str) -> Result<f32, LoadError> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let values: Vec<&str> = inner.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    match values.as_slice() {
        [one] => one
            .parse::<f32>()
            .map_err(|_| invalid(format!("base_score {text:?} is not a number"))),
        _ => Err(unsupported(format!(
            "base_score {text:?} has {} values; only single-output models are supported",
            values.len()
        ))),
    }
}

fn is_ubjson(bytes: &[u8]) -> bool {
    // Both formats open with '{'; JSON then has whitespace or a quoted key, UBJSON a length marker.
    let mut rest = bytes.iter().skip_while(|b| b.is_ascii_whitespace());
    rest.next() == Some(&b'{') && matches!(rest.next(), Some(b'i' | b'U' | b'I' | b'l' | b'L' | b'}'))
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` outside strings with `null`.
fn nan_as_null(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            match b {
                b'\\' if i + 1 < bytes.len() => {
                    out.push(bytes[i + 1]);
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let token = [&b"NaN"[..], b"-Infinity", b"Infinity"]
            .into_iter()
            .find(|t| bytes[i..].starts_with(t));
        match token {
            Some(token) => {
                out.extend_from_slice(b"null");
                i += token.len();
            }
            None => {
                in_string = b == b'"';
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

pub(super) fn forest(bytes: &[u8]) -> Result<Forest, LoadError> {
    let document: Value = if is_ubjson(bytes) {
        ubjson::decode(bytes)?
    } else {
        match serde_json::from_slice(bytes) {
            Ok(document) => document,
            // XGBoost writes bare NaN (not JSON) for some values; read them as null and let the
            // checks below say what is wrong with the model, not with the syntax.
            Err(error) => serde_json::from_slice(&nan_as_null(bytes)).map_err(|_| error)?,
        }
    };
    let file: ModelFile = serde_json::from_value(document)?;
    let learner = file.learner;

    let booster = learner
        .gradient_booster
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if booster != "gbtree" {
        return Err(unsupported(format!(
            "booster {booster:?}; only gbtree is supported (dart and gblinear are refused)"
        )));
    }
    let params = &learner.learner_model_param;
    if count(params, "num_class")?.unwrap_or(0) > 1 {
        return Err(unsupported("multi-class models (num_class > 1)"));
    }
    if count(params, "num_target")?.unwrap_or(1) > 1 {
        return Err(unsupported("multi-target models (num_target > 1)"));
    }
    let objective_name = learner.objective.name;
    let objective =
        Objective::from_name(&objective_name).ok_or_else(|| unsupported(format!("objective {objective_name:?}")))?;

    let num_features = count(params, "num_feature")?.ok_or_else(|| invalid("num_feature is missing"))?;
    if num_features == 0 || num_features > u32::MAX as usize {
        return Err(invalid(format!("num_feature = {num_features}")));
    }
    let base_score_text = scalar(params, "base_score")?.ok_or_else(|| invalid("base_score is missing"))?;
    let base_score = base_score(&base_score_text)?;
    let base_margin = objective.base_margin(base_score).ok_or_else(|| {
        invalid(format!(
            "base_score {base_score} is outside the domain of {objective_name}"
        ))
    })?;

    let model = learner
        .gradient_booster
        .get("model")
        .cloned()
        .ok_or_else(|| invalid("gbtree has no model"))?;
    let model: GbTreeModel = serde_json::from_value(model)?;
    if model.tree_info.len() != model.trees.len() {
        return Err(invalid(format!(
            "tree_info lists {} trees but there are {}",
            model.tree_info.len(),
            model.trees.len()
        )));
    }
    if model.tree_info.iter().any(|&group| group != 0) {
        return Err(unsupported("trees for more than one output group"));
    }
    let parallel = count(&model.gbtree_model_param, "num_parallel_tree")?
        .unwrap_or(1)
        .max(1);

    // The scikit-learn wrapper predicts with the trees up to `best_iteration` when the model has one.
    let used = match learner.attributes.get("best_iteration").and_then(Value::as_str) {
        Some(best) => {
            let best: usize = best.parse().map_err(|_| invalid(format!("best_iteration {best:?}")))?;
            ((best + 1) * parallel).min(model.trees.len())
        }
        None => model.trees.len(),
    };

    let mut nodes = vec![Node::PLACEHOLDER];
    let mut leaf_values = vec![0.0];
    let mut default_left = vec![false];
    let mut covers = vec![f32::NAN];
    let mut trees = Vec::with_capacity(used);
    for (i, tree) in model.trees.iter().take(used).enumerate() {
        let mut flat = Flat {
            nodes: &mut nodes,
            leaf_values: &mut leaf_values,
            default_left: &mut default_left,
            covers: &mut covers,
        };
        let tree = flatten(tree, num_features, &mut flat).map_err(|e| match e {
            LoadError::Invalid(reason) => invalid(format!("tree {i}: {reason}")),
            LoadError::Unsupported(reason) => unsupported(format!("tree {i}: {reason}")),
            other => other,
        })?;
        trees.push(tree);
    }

    let version = match file.version.as_slice() {
        [major, minor, patch, ..] => Some([*major, *minor, *patch]),
        _ => None,
    };
    let mut forest = Forest {
        nodes,
        leaf_values,
        default_left,
        covers,
        means: None,
        tables: None,
        quantized: None,
        traversal: super::TRAVERSAL.get().copied().unwrap_or_else(super::Traversal::detect),
        trees,
        num_features,
        base_margin,
        objective,
        info: ForestInfo {
            objective: objective_name,
            xgboost_version: version,
            trees: used,
            base_score,
        },
    };
    forest.quantized = super::quantized::Quantized::build(&forest);
    forest.means = forest.node_means();
    if forest.means.is_some() {
        forest.tables = Some(super::shap::Tables::build(&forest, super::shap::BUDGET));
    }
    Ok(forest)
}

/// The forest's per-node arrays, growing tree by tree, all indexed by a node's slot.
struct Flat<'a> {
    nodes: &'a mut Vec<Node>,
    leaf_values: &'a mut Vec<f32>,
    default_left: &'a mut Vec<bool>,
    covers: &'a mut Vec<f32>,
}

impl Flat<'_> {
    fn push(&mut self, count: usize) {
        self.nodes.extend(std::iter::repeat_n(Node::PLACEHOLDER, count));
        self.leaf_values.extend(std::iter::repeat_n(0.0, count));
        self.default_left.extend(std::iter::repeat_n(false, count));
        self.covers.extend(std::iter::repeat_n(f32::NAN, count));
    }
}

/// Appends one tree to the forest's arrays in breadth-first order with sibling pairs side by side.
fn flatten(tree: &Tree, num_features: usize, flat: &mut Flat<'_>) -> Result<TreeRef, LoadError> {
    let n = count(&tree.tree_param, "num_nodes")?.ok_or_else(|| invalid("num_nodes is missing"))?;
    if count(&tree.tree_param, "size_leaf_vector")?.unwrap_or(0) > 1 {
        return Err(unsupported("vector leaves (multi-target trees)"));
    }
    if n == 0 {
        return Err(invalid("a tree with no nodes"));
    }
    let lengths = [
        ("left_children", tree.left_children.len()),
        ("right_children", tree.right_children.len()),
        ("split_indices", tree.split_indices.len()),
        ("split_conditions", tree.split_conditions.len()),
        ("default_left", tree.default_left.len()),
    ];
    for (name, len) in lengths {
        if len != n {
            return Err(invalid(format!("{name} has {len} entries for {n} nodes")));
        }
    }
    // A model without covers predicts; it cannot explain (`Forest::contributions` says so).
    if !tree.sum_hessian.is_empty() && tree.sum_hessian.len() != n {
        return Err(invalid(format!(
            "sum_hessian has {} entries for {n} nodes",
            tree.sum_hessian.len()
        )));
    }
    if tree.split_type.iter().any(|&t| t != 0) {
        return Err(unsupported("categorical splits"));
    }

    let root = flat.nodes.len();
    let mut depth = 0;
    let mut seen = vec![false; n];
    // (node in the file, its slot in `nodes`, its depth)
    let mut queue = std::collections::VecDeque::from([(0usize, root, 0u32)]);
    flat.push(1);
    while let Some((old, slot, level)) = queue.pop_front() {
        if std::mem::replace(&mut seen[old], true) {
            return Err(invalid(format!("node {old} is reached twice")));
        }
        flat.covers[slot] = tree.sum_hessian.get(old).copied().flatten().unwrap_or(f32::NAN);
        let (left, right) = (tree.left_children[old], tree.right_children[old]);
        let value = match tree.split_conditions[old] {
            Some(value) if value.is_finite() => value,
            other => return Err(invalid(format!("node {old} has value {other:?}"))),
        };
        if left == -1 {
            flat.nodes[slot] = Node::leaf(slot);
            flat.leaf_values[slot] = value;
            depth = depth.max(level);
            continue;
        }
        let child = |c: i64| usize::try_from(c).ok().filter(|&c| c < n && c != 0);
        let (Some(left), Some(right)) = (child(left), child(right)) else {
            return Err(invalid(format!("node {old} has children {left} and {right}")));
        };
        let feature = usize::try_from(tree.split_indices[old])
            .ok()
            .filter(|&f| f < num_features)
            .ok_or_else(|| invalid(format!("node {old} splits on feature {}", tree.split_indices[old])))?;
        let left_slot = flat.nodes.len();
        flat.nodes[slot] = Node {
            threshold: value,
            feature: feature as u32,
            left: left_slot as u32,
        };
        flat.default_left[slot] = tree.default_left[old].is_set();
        flat.push(2);
        queue.push_back((left, left_slot, level + 1));
        queue.push_back((right, left_slot + 1, level + 1));
    }
    if flat.nodes.len() > (u32::MAX / 2) as usize {
        return Err(invalid("too many nodes"));
    }
    Ok(TreeRef {
        root: root as u32,
        depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_score_forms() {
        assert_eq!(base_score("5E-1").unwrap(), 0.5);
        assert_eq!(base_score("[5E-1]").unwrap(), 0.5);
        assert_eq!(base_score("[1.2312165E4]").unwrap(), 12312.165);
        assert!(matches!(base_score("[1,2]"), Err(LoadError::Unsupported(_))));
        assert!(matches!(base_score("abc"), Err(LoadError::Invalid(_))));
    }

    #[test]
    fn bare_nan_tokens_become_null_outside_strings() {
        let text = br#"{"a": [NaN, -Infinity, 1.5], "NaN": "x\"NaN", "b": Infinity}"#;
        let clean = nan_as_null(text);
        assert_eq!(
            std::str::from_utf8(&clean).unwrap(),
            r#"{"a": [null, null, 1.5], "NaN": "x\"NaN", "b": null}"#
        );
    }

    #[test]
    fn sniffs_the_format() {
        assert!(!is_ubjson(br#"{"learner": {}}"#));
        assert!(!is_ubjson(b" \n{ \"learner\": 1}"));
        assert!(is_ubjson(b"{L\0\0\0\0\0\0\0\x07learner"));
        assert!(is_ubjson(b"{i\x07learner"));
    }
}
