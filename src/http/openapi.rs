//! The OpenAPI document, generated with utoipa from the handlers and from the loaded bundle: the
//! request schema lists the bundle's columns, their types and known categories, and its example is
//! the bundle's own, so "Try it out" in Swagger UI works at once. `xgserve openapi` writes it to
//! `openapi/openapi.json`, and a test fails when the committed file and the served one differ.

use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Required};
use utoipa::OpenApi;

use super::{handlers, ErrorBody};
use crate::bundle::Model;
use crate::preprocess::{ColumnKind, StepSpec};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xgserve",
        description = "Serves an XGBoost model with predictions identical to the Python pipeline it was trained in. \
                       POST /predict is compatible with the BentoML service it replaces."
    ),
    paths(
        handlers::predict,
        handlers::healthz,
        handlers::live,
        handlers::ready,
        handlers::info,
        handlers::metrics,
        handlers::reload
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "predict", description = "Predictions"),
        (name = "operations", description = "Health, readiness, model information, metrics and reload")
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
    doc
}

fn request_body(model: &Model) -> utoipa::openapi::request_body::RequestBody {
    let mut columns = ObjectBuilder::new().schema_type(Type::Object).description(Some(format!(
        "Columns of equal length, one value per car (null is a missing value). Model {} version {}; \
         other columns are ignored. A list of records, or text/csv with a header row, is accepted too.",
        model.manifest.name, model.manifest.version
    )));
    for input in model.preprocessor.inputs() {
        let item = match input.kind {
            ColumnKind::Number => ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Number, Type::Null])),
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
                text
            }
        };
        columns = columns
            .property(&input.name, ArrayBuilder::new().items(item).min_items(Some(1)))
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
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                .build(),
        )
        .build()
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
