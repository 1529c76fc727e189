//! xgserve: serves XGBoost models trained in Python with predictions identical to the Python pipeline.
//!
//! The layers, each knowing only the ones below it:
//! - [`engine`]: tree ensembles, features in, predictions out;
//! - [`preprocess`]: the sklearn ColumnTransformer as a declarative spec, raw columns in, features out;
//! - [`bundle`]: a model folder on disk, checked and loaded into a ready [`bundle::Model`];
//! - [`explain`]: a prediction's exact contributions, per feature and per input column;
//! - [`input`]: request bodies (columnar JSON, records, CSV) decoded into typed columns;
//! - [`core`]: the served model, admission, scoring, metrics and errors, under every transport;
//! - [`http`]: the HTTP server; [`grpc`]: the Open Inference Protocol over gRPC; [`stream`]: the Kafka bridge for Debezium change events;
//! - the commands (`cli`, `commands`) that put them to work.

pub mod bundle;
pub mod cli;
pub mod commands;
pub mod core;
pub mod engine;
pub mod explain;
pub mod grpc;
pub mod http;
pub mod input;
pub mod preprocess;
pub mod pyfloat;
pub mod stream;
