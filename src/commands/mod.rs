//! What each subcommand does; `main.rs` only parses arguments and calls [`run`].

mod healthcheck;
mod models;
mod predict;
mod serve;
mod stream;

use crate::cli::{Cli, Command, ModelsCommand};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Before any model is loaded: every forest takes the traversal chosen here.
    crate::engine::configure_traversal().map_err(anyhow::Error::msg)?;
    match cli.command.unwrap_or_else(|| Command::Serve(Default::default())) {
        Command::Serve(args) => serve::run(args),
        Command::Openapi { model, output } => {
            let model = crate::bundle::Model::load(&model)?;
            let mut text = serde_json::to_string_pretty(&crate::http::openapi::spec(&model))?;
            text.push('\n');
            std::fs::write(&output, text).map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", output.display()))?;
            Ok(())
        }
        Command::Healthcheck { url } => healthcheck::run(&url),
        Command::Predict(args) => predict::run(&args),
        Command::Models(ModelsCommand::List { dir }) => models::list(&dir, &mut std::io::stdout()),
        Command::Stream(args) => stream::run(*args),
    }
}
