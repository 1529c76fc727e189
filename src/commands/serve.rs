//! `xgserve serve`: load and prove the bundle, then serve it until SIGTERM or SIGINT.

use std::time::Instant;

use anyhow::Context;

use crate::bundle::Model;
use crate::cli::ServeArgs;
use crate::http::{self, AppState};
use crate::input::Limits;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    tracing::info!(?args, "effective configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Loading checks digests and replays the parity cases, which is also the warm-up prediction.
    let model = Model::load(&args.model)?;
    let address = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(
        name = %model.manifest.name,
        version = %model.manifest.version,
        digest = %model.digest,
        parity_cases = model.parity.0 + model.parity.1,
        address = %listener.local_addr()?,
        startup_ms = started.elapsed().as_millis() as u64,
        "ready"
    );
    let state = AppState::new(
        model,
        Limits {
            max_rows: args.max_rows,
        },
        args.max_body_bytes,
    );
    http::run(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: not ready, finishing requests in flight");
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
