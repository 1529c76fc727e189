//! The OpenAPI document, generated with utoipa from the handlers and from the loaded bundle: the
//! request schema lists the bundle's columns, their types and known categories, and its example is
//! the bundle's own, so "Try it out" in Swagger UI works at once. `xgserve openapi` writes it to
//! `openapi/openapi.json`, and a test fails when the committed file and the served one differ.

use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ArrayItems, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr, Required};
use utoipa::OpenApi;

use axum::extract::State;
use axum::Json;

use super::{handlers, v2, AppState, ErrorBody, V2Error};
use crate::bundle::Model;
use crate::core;
use crate::input;
use crate::preprocess::{ColumnKind, InputSpec, StepSpec};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xgserve",
        description = "Serves an XGBoost model with predictions identical to the Python pipeline it was trained in. \
                       POST /predict is compatible with the BentoML service it replaces."
    ),
    paths(
        handlers::predict,
        handlers::explain,
        handlers::healthz,
        handlers::live,
        handlers::ready,
        handlers::info,
        handlers::metrics,
        handlers::reload,
        v2::server_metadata,
        v2::live,
        v2::ready,
        v2::model_metadata,
        v2::model_ready,
        v2::infer
    ),
    components(schemas(ErrorBody, V2Error)),
    tags(
        (name = "predict", description = "Predictions"),
        (name = "operations", description = "Health, readiness, model information, metrics and reload"),
        (name = "v2", description = "The Open Inference Protocol (KServe, Triton, MLServer clients)")
    )
)]
struct ApiDoc;

/// The document for a server serving `model`.
pub fn spec(model: &Model) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.license = None;
    doc.info.contact = None;
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    if let Some(operation) = doc.paths.paths.get_mut("/predict").and_then(|item| item.post.as_mut()) {
        operation.request_body = Some(request_body(model));
    }
    if let Some(operation) = doc.paths.paths.get_mut("/explain").and_then(|item| item.post.as_mut()) {
        operation.request_body = Some(request_body(model));
        // The example answer is the served model's own explanation of the example body.
        let ok = operation.responses.responses.get_mut("200");
        if let (Some(RefOr::T(ok)), Some(example)) = (ok, explained_example(model)) {
            for content in ok.content.values_mut() {
                content.example = Some(example.clone());
            }
        }
    }
    let infer = "/v2/models/{name}/infer";
    if let Some(operation) = doc.paths.paths.get_mut(infer).and_then(|item| item.post.as_mut()) {
        operation.request_body = Some(infer_body(model));
    }
    // The model's name is the one value the v2 model routes know.
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v2/models/{name}") {
            continue;
        }
        let operations = [item.get.as_mut(), item.post.as_mut()];
        for parameter in operations
            .into_iter()
            .flatten()
            .flat_map(|o| o.parameters.iter_mut().flatten())
        {
            if parameter.name == "name" {
                let name = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([model.manifest.name.as_str()]));
                parameter.schema = Some(RefOr::T(name.into()));
            }
        }
    }
    doc
}

/// The bundle's example body explained by the model, when it explains.
fn explained_example(model: &Model) -> Option<serde_json::Value> {
    let body = serde_json::to_vec(&model.example).ok()?;
    let limits = input::Limits { max_rows: usize::MAX };
    let batch = input::decode_json(&body, model.preprocessor.inputs(), limits).ok()?;
    let explanation = model.explain(&batch).ok()?;
    serde_json::from_str(&explanation.to_json(model, crate::explain::Attribution::Column)).ok()
}

/// The OpenAPI document of this server and model (also at Bento's `/docs.json`).
pub async fn serve(State(state): State<AppState>) -> Json<Document> {
    Json(spec(&state.model()))
}

fn request_body(model: &Model) -> utoipa::openapi::request_body::RequestBody {
    let mut columns = ObjectBuilder::new().schema_type(Type::Object).description(Some(format!(
        "Columns of equal length, one value per car (null is a missing value). Model {} version {}; \
         other columns are ignored. A list of records, or text/csv with a header row, is accepted too.",
        model.manifest.name, model.manifest.version
    )));
    for input in model.preprocessor.inputs() {
        let item = value_schema(model, input);
        columns = columns
            .property(
                &input.name,
                ArrayBuilder::new().items(RefOr::T(item)).min_items(Some(1)),
            )
            .required(&input.name);
    }
    RequestBodyBuilder::new()
        .description(Some("The cars to price"))
        .required(Some(Required::True))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(columns.build()))
                .example(Some(model.example.clone()))
                .build(),
        )
        .content(
            "text/csv",
            ContentBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some(
                            "A header row naming the columns (in any order, other columns ignored), then one car \
                             per line; an empty cell is a missing value. The pattern is the plainest form.",
                        ))
                        .pattern(Some(csv_pattern(model.preprocessor.inputs())))
                        .build(),
                ))
                .example(csv_example(model).map(serde_json::Value::from))
                .build(),
        )
        .build()
}

/// The schema of one value of an input column, from the bundle's spec.
fn value_schema(model: &Model, input: &InputSpec) -> Schema {
    match input.kind {
        ColumnKind::Number if log1p_then_more(model, &input.name) => {
            // ln(1 + -1) is -inf, which the next step refuses, as sklearn does: any number but -1.
            let number = || ObjectBuilder::new().schema_type(Type::Number);
            AnyOfBuilder::new()
                .item(number().exclusive_maximum(Some(-1.0)))
                .item(number().exclusive_minimum(Some(-1.0)))
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .description(Some("A number other than -1 (ln(1 + x) is -inf there), or null"))
                .into()
        }
        ColumnKind::Number => ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Number, Type::Null]))
            .into(),
        ColumnKind::String => {
            let mut text = ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
            if let Some(categories) = known_categories(model, &input.name) {
                text = text.enum_values(Some(
                    categories
                        .into_iter()
                        .map(serde_json::Value::from)
                        .chain([serde_json::Value::Null]),
                ));
            }
            text.into()
        }
    }
}

/// A v2 inference request for this bundle: one tensor per input column, in the bundle's order (the
/// server takes any order), each with as many values as its shape says.
fn infer_body(model: &Model) -> utoipa::openapi::request_body::RequestBody {
    let tensors = model.preprocessor.inputs().iter().map(|input| {
        let value = value_schema(model, input);
        let datatypes: &[&str] = match input.kind {
            ColumnKind::Number => &input::V2_NUMBER_DATATYPES,
            ColumnKind::String => &["BYTES"],
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "name",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([input.name.as_str()])),
            )
            .required("name")
            .property(
                "shape",
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
                    .description(Some(
                        "Dimensions whose product is the number of values: [rows] or [rows, 1]",
                    )),
            )
            .required("shape")
            .property(
                "datatype",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(datatypes.iter().copied())),
            )
            .required("datatype")
            .property(
                "data",
                ArrayBuilder::new()
                    .items(RefOr::T(
                        AnyOfBuilder::new()
                            .item(value.clone())
                            .item(ArrayBuilder::new().items(RefOr::T(value)))
                            .into(),
                    ))
                    .min_items(Some(1))
                    .description(Some("The values in row-major order, flat or nested as the shape")),
            )
            .required("data")
            .build()
    });
    let inputs = ArrayBuilder::new()
        .prefix_items(tensors)
        .items(ArrayItems::False)
        .min_items(Some(model.preprocessor.inputs().len()))
        .description(Some("One tensor per input column, all with the same number of values"));
    let request = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some("Echoed in the response")),
        )
        .property("inputs", inputs)
        .required("inputs")
        .property("outputs", requested_outputs(model));
    RequestBodyBuilder::new()
        .description(Some("The cars to price, one tensor per column"))
        .required(Some(Required::True))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(request.build()))
                .example(infer_example(model))
                .build(),
        )
        .build()
}

/// The outputs a v2 request may name, in the order it wants them answered: `predict`, and
/// `contributions` when the model can explain.
fn requested_outputs(model: &Model) -> ArrayBuilder {
    let names = core::output_tensors(model).into_iter().map(|(name, _)| name);
    let output = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "name",
            ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)),
        )
        .required("name");
    ArrayBuilder::new().items(RefOr::T(output.into())).description(Some(
        "The outputs to answer, in this order; without it, `predict` alone. `contributions`: per row \
         each input column's contribution, then the base value",
    ))
}

/// The bundle's example as a v2 inference request, when it is columnar.
fn infer_example(model: &Model) -> Option<serde_json::Value> {
    let inputs = model.preprocessor.inputs();
    let tensors = inputs
        .iter()
        .map(|input| {
            let data = model.example.get(&input.name)?.as_array()?;
            let datatype = input::v2_datatype(input.kind);
            Some(serde_json::json!({"name": input.name, "shape": [data.len()], "datatype": datatype, "data": data}))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(serde_json::json!({ "inputs": tensors }))
}

/// A regular expression every CSV body of this form matches and the server accepts: the header in
/// the bundle's column order, then rows of unquoted text or plain non-negative decimals (empty is
/// missing).
/// It declares what a client can rely on; the decoder accepts more (any column order, quoting).
fn csv_pattern(inputs: &[InputSpec]) -> String {
    let header = inputs
        .iter()
        .map(|input| regex_literal(&input.name))
        .collect::<Vec<_>>()
        .join(",");
    let row = inputs
        .iter()
        .map(|input| match input.kind {
            ColumnKind::Number => r"([0-9]{1,9}(\.[0-9]{1,9})?)?",
            ColumnKind::String => r#"[^,"\r\n]*"#,
        })
        .collect::<Vec<_>>()
        .join(",");
    format!(r"^{header}(\r?\n{row})+\r?\n?$")
}

fn regex_literal(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = r"\^$.|?*+()[]{}".contains(c).then_some('\\');
            escape.into_iter().chain([c])
        })
        .collect()
}

/// The bundle's example as CSV, when it is columnar with plain values.
fn csv_example(model: &Model) -> Option<String> {
    let inputs = model.preprocessor.inputs();
    let columns = inputs
        .iter()
        .map(|input| model.example.get(&input.name)?.as_array())
        .collect::<Option<Vec<_>>>()?;
    let rows = columns.first()?.len();
    let mut csv = inputs
        .iter()
        .map(|input| input.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    for row in 0..rows {
        csv.push('\n');
        let cells = columns
            .iter()
            .map(|column| match column.get(row)? {
                serde_json::Value::String(text) if !text.contains([',', '"', '\r', '\n']) => Some(text.clone()),
                serde_json::Value::Number(number) => Some(number.to_string()),
                serde_json::Value::Null => Some(String::new()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        csv.push_str(&cells.join(","));
    }
    Some(csv)
}

/// Whether a number column goes through `ln(1 + x)` and then another step, which refuses the -inf
/// that -1 becomes.
fn log1p_then_more(model: &Model, column: &str) -> bool {
    model.preprocessor.spec().blocks.iter().any(|block| {
        block.columns.iter().any(|c| c == column)
            && block
                .steps
                .iter()
                .position(|step| matches!(step, StepSpec::Log1p))
                .is_some_and(|i| i + 1 < block.steps.len())
    })
}

/// The categories a text column's encoder knows, unless a step before it maps every other value to
/// one of them (as the fuel-type grouping does), in which case any text is meaningful.
fn known_categories(model: &Model, column: &str) -> Option<Vec<String>> {
    for block in &model.preprocessor.spec().blocks {
        let Some(j) = block.columns.iter().position(|c| c == column) else {
            continue;
        };
        for step in &block.steps {
            match step {
                StepSpec::KeepOrReplace { .. } | StepSpec::Impute { .. } => return None,
                StepSpec::OneHot { categories, .. } | StepSpec::Ordinal { categories, .. } => {
                    return Some(categories[j].clone())
                }
                StepSpec::CategoryMap { maps, .. } => return Some(maps[j].keys().cloned().collect()),
                _ => {}
            }
        }
    }
    None
}
