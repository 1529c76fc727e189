//! Command-line arguments. Every flag has an environment variable and a default; `--help` prints the
//! doc comments below.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The default bundle, shipped in this repository.
pub const DEFAULT_MODEL_DIR: &str = "models/ford_used_car_price";

#[derive(Debug, Parser)]
#[command(
    name = "xgserve",
    version,
    about = "Serves XGBoost bundles with predictions identical to the Python pipeline"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score a CSV or JSON file offline and print the predictions as a JSON array.
    Predict(PredictArgs),
    /// Inspect the bundles in a folder.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The bundle folder.
    #[arg(long, env = "XGSERVE_MODEL_DIR", default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// Cars to score: `.csv` with a header row, or `.json` (columnar or a list of records).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the predictions; standard output when absent.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write the preprocessed feature matrix (one list per row) instead of predictions, to compare
    /// with the Python ColumnTransformer's output.
    #[arg(long)]
    pub features: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the bundles: name, version, size and creation time.
    List {
        /// The folder holding one bundle per subfolder.
        #[arg(long, env = "XGSERVE_MODELS", default_value = "models")]
        dir: PathBuf,
    },
}
