//! Request bodies: the three formats decode to the same batch, and every refusal names its kind,
//! column and row.

mod common;

use xgserve::bundle::Model;
use xgserve::input::{decode_csv, decode_json, Limits};
use xgserve::preprocess::{Batch, InputError, InputErrorKind};
use xgserve::pyfloat::float32_array;

fn model() -> Model {
    Model::load(common::shipped_bundle()).unwrap()
}

fn json(model: &Model, body: &str) -> Result<Batch, InputError> {
    decode_json(body.as_bytes(), model.preprocessor.inputs(), Limits { max_rows: 1000 })
}

fn refused(model: &Model, body: &str) -> InputError {
    match json(model, body) {
        Ok(batch) => match model.predict(&batch) {
            Ok(p) => panic!("{body} was accepted: {p:?}"),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

const EXAMPLE: &str = include_str!("fixtures/bento_example.json");

#[test]
fn bento_example_gives_bentos_bytes() {
    let model = model();
    let predictions = model.predict(&json(&model, EXAMPLE).unwrap()).unwrap();
    // The Bento service's response for this body, as the mission statement records it.
    assert_eq!(
        float32_array(&predictions),
        include_str!("fixtures/bento_example.response").trim()
    );
}

#[test]
fn columnar_records_and_csv_agree() {
    let model = model();
    let records = r#"[
        {"model": "C-MAX", "year": 2014, "price": 8295, "transmission": "Semi-Auto", "mileage": 40000,
         "fuelType": "Diesel", "tax": 160, "mpg": 50.4, "engineSize": 2.0},
        {"model": " EcoSport", "year": 2019, "transmission": "Automatic", "mileage": 1400,
         "fuelType": "Petrol", "tax": 150, "mpg": 44.1, "engineSize": 1, "colour": "red"}
    ]"#;
    let csv = "model,year,price,transmission,mileage,fuelType,tax,mpg,engineSize\r\n \
               C-MAX,2014,8295,Semi-Auto,40000,Diesel,160,50.4,2.0\r\n EcoSport,2019,18995,Automatic,1400,Petrol,150,44.1,1.0\r\n";
    let from_columnar = model.predict(&json(&model, EXAMPLE).unwrap()).unwrap();
    let from_records = model.predict(&json(&model, records).unwrap()).unwrap();
    let from_csv = model
        .predict(&decode_csv(csv.as_bytes(), model.preprocessor.inputs(), Limits::default()).unwrap())
        .unwrap();
    assert_eq!(from_columnar, from_records);
    assert_eq!(from_columnar, from_csv);
}

#[test]
fn nulls_are_missing_values_not_errors() {
    let model = model();
    let body = r#"{"model": [null], "year": [null], "transmission": [null], "mileage": [null],
                   "fuelType": [null], "tax": [null], "mpg": [null], "engineSize": [null]}"#;
    let predictions = model.predict(&json(&model, body).unwrap()).unwrap();
    assert!(predictions[0].is_finite());
}

#[test]
fn each_refusal_names_kind_column_and_row() {
    let model = model();
    let cases = [
        (EXAMPLE.replace(r#""mpg": [50.4, 44.1], "#, ""), InputErrorKind::MissingColumn, Some("mpg"), None),
        (EXAMPLE.replace("[2014, 2019]", "[2014]"), InputErrorKind::Ragged, Some("year"), None),
        (EXAMPLE.replace("[2014, 2019]", r#"[2014, "2019"]"#), InputErrorKind::Type, Some("year"), Some(1)),
        (EXAMPLE.replace(r#"["Diesel", "Petrol"]"#, r#"["Diesel", 7]"#), InputErrorKind::Type, Some("fuelType"), Some(1)),
        (EXAMPLE.replace("[2014, 2019]", "[2014, true]"), InputErrorKind::Type, Some("year"), Some(1)),
        (EXAMPLE.replace("[2014, 2019]", "2014"), InputErrorKind::Type, Some("year"), None),
        (EXAMPLE.replace("[40000, 1400]", "[40000, -1]"), InputErrorKind::OutOfRange, Some("mileage"), Some(1)),
        (EXAMPLE.replace("[2014, 2019]", "[2014, 1e400]"), InputErrorKind::Syntax, None, None),
        (EXAMPLE.replace("[2014, 2019]", "[2014, NaN]"), InputErrorKind::Syntax, None, None),
        (EXAMPLE[..40].to_owned(), InputErrorKind::Syntax, None, None),
        (r#"{"model": [], "year": [], "transmission": [], "mileage": [], "fuelType": [], "tax": [], "mpg": [], "engineSize": []}"#.to_owned(), InputErrorKind::Empty, None, None),
        ("[]".to_owned(), InputErrorKind::Empty, None, None),
        (r#"[{"model": "Focus"}]"#.to_owned(), InputErrorKind::MissingColumn, Some("year"), Some(0)),
        ("\"cars\"".to_owned(), InputErrorKind::Syntax, None, None),
    ];
    for (body, kind, column, row) in cases {
        let error = refused(&model, &body);
        assert_eq!(error.kind, kind, "{body}: {error}");
        assert_eq!(error.column.as_deref(), column, "{body}: {error}");
        assert_eq!(error.row, row, "{body}: {error}");
        if let Some(column) = column {
            assert!(error.message.contains(column), "{error}");
        }
    }
}

#[test]
fn row_limit_is_enforced_in_every_format() {
    let model = model();
    let inputs = model.preprocessor.inputs();
    let limits = Limits { max_rows: 1 };
    let error = decode_json(EXAMPLE.as_bytes(), inputs, limits).unwrap_err();
    assert_eq!(error.kind, InputErrorKind::TooManyRows);
    let records = format!(
        "[{0},{0}]",
        r#"{"model": "Focus", "year": 1, "transmission": "Manual", "mileage": 1, "fuelType": "Petrol", "tax": 1, "mpg": 1, "engineSize": 1}"#
    );
    assert_eq!(
        decode_json(records.as_bytes(), inputs, limits).unwrap_err().kind,
        InputErrorKind::TooManyRows
    );
    let csv = "model,year,transmission,mileage,fuelType,tax,mpg,engineSize\nFocus,1,Manual,1,Petrol,1,1,1\nFocus,1,Manual,1,Petrol,1,1,1\n";
    assert_eq!(
        decode_csv(csv.as_bytes(), inputs, limits).unwrap_err().kind,
        InputErrorKind::TooManyRows
    );
}

#[test]
fn csv_refusals() {
    let model = model();
    let inputs = model.preprocessor.inputs();
    let header = "model,year,transmission,mileage,fuelType,tax,mpg,engineSize\n";
    let bad_number = format!("{header}Focus,twenty,Manual,1,Petrol,1,1,1\n");
    let error = decode_csv(bad_number.as_bytes(), inputs, Limits::default()).unwrap_err();
    assert_eq!(
        (error.kind, error.column.as_deref(), error.row),
        (InputErrorKind::Type, Some("year"), Some(0))
    );
    let infinite = format!("{header}Focus,inf,Manual,1,Petrol,1,1,1\n");
    assert_eq!(
        decode_csv(infinite.as_bytes(), inputs, Limits::default())
            .unwrap_err()
            .kind,
        InputErrorKind::OutOfRange
    );
    let short_row = format!("{header}Focus,2019\n");
    assert_eq!(
        decode_csv(short_row.as_bytes(), inputs, Limits::default())
            .unwrap_err()
            .kind,
        InputErrorKind::Syntax
    );
    let missing = "model,year\nFocus,2019\n";
    let error = decode_csv(missing.as_bytes(), inputs, Limits::default()).unwrap_err();
    assert_eq!(
        (error.kind, error.column.as_deref()),
        (InputErrorKind::MissingColumn, Some("transmission"))
    );
}
