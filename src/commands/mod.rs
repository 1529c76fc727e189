//! What each subcommand does; `main.rs` only parses arguments and calls [`run`].

mod models;
mod predict;
mod serve;

use crate::cli::{Cli, Command, ModelsCommand};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or_else(|| Command::Serve(Default::default())) {
        Command::Serve(args) => serve::run(args),
        Command::Predict(args) => predict::run(&args),
        Command::Models(ModelsCommand::List { dir }) => models::list(&dir, &mut std::io::stdout()),
    }
}
