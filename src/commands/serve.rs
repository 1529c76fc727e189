//! `xgserve serve`: load and prove the bundle, then serve it; SIGHUP reloads, SIGTERM/SIGINT drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bundle::Model;
use crate::cli::ServeArgs;
use crate::core::Core;
use crate::http::{self, AppState, HttpConfig};
use crate::input::Limits;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    tracing::info!(?args, "effective configuration");
    // Accepting, signals and reloads; the connections are served on `http::run`'s own workers.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

fn config(args: &ServeArgs) -> HttpConfig {
    HttpConfig {
        limits: Limits {
            max_rows: args.max_rows,
        },
        max_body_bytes: args.max_body_bytes,
        api_key: args.api_key.as_ref().map(|s| s.0.clone()),
        max_concurrency: args.max_concurrency,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        model_name: args.model_name.clone(),
        header_read_timeout: (args.header_read_timeout_ms > 0)
            .then(|| Duration::from_millis(args.header_read_timeout_ms)),
        cors_origins: args.cors_origins.clone(),
        workers: args.workers,
        pin_workers: args.pin_workers,
        worker_slice: (args.worker_slice_us > 0).then(|| Duration::from_micros(args.worker_slice_us)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Loading checks digests and replays the parity cases, which is also the warm-up prediction.
    let model = Model::load(&args.model)?;
    let address = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let grpc_address = format!("{}:{}", args.host, args.grpc_port);
    let grpc_listener = std::net::TcpListener::bind(&grpc_address)
        .with_context(|| format!("cannot listen for gRPC on {grpc_address}"))?;
    grpc_listener.set_nonblocking(true)?;
    let config = config(&args);
    let core = Arc::new(Core::new(model, config.policy()));
    let model = core.model();
    tracing::info!(
        name = %model.manifest.name,
        version = %model.manifest.version,
        digest = %model.digest,
        parity_cases = model.parity.0 + model.parity.1,
        traversal = model.forest.traversal().name(),
        address = %listener.local_addr()?,
        grpc_address = %grpc_listener.local_addr()?,
        startup_ms = started.elapsed().as_millis() as u64,
        "ready"
    );
    let state = AppState::with_core(core.clone(), config);
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(state.clone()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let server = tokio::spawn(http::run(listener, state.clone(), until_stopped()));
    let grpc = grpc_thread(grpc_listener, core, until_stopped(), state.config.workers)?;
    shutdown_signal().await;
    state.stop_ready();
    // Logged once it is true: a probe that follows this line gets 503.
    tracing::info!("shutting down: not ready, closing connections after their answers");
    tokio::time::sleep(Duration::from_millis(args.shutdown_delay_ms)).await;
    tracing::info!("closing the listener, finishing requests in flight");
    let _ = stop.send(true);
    let both = async {
        let http = server.await;
        let grpc = grpc.await;
        http??;
        grpc??;
        anyhow::Ok(())
    };
    match tokio::time::timeout(grace, both).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(
            seconds = grace.as_secs(),
            "requests still in flight after the grace period; exiting"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves gRPC on a multi-threaded runtime of its own (the accepting runtime here has one thread),
/// until `stopped`; the receiver says when it has finished.
fn grpc_thread(
    listener: std::net::TcpListener,
    core: Arc<Core>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
    workers: usize,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<Result<(), tonic::transport::Error>>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(http::worker_count(workers))
        .thread_name("grpc")
        .enable_all()
        .build()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("grpc".into()).spawn(move || {
        let result = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a non-blocking listener");
            crate::grpc::run(listener, core, stopped).await
        });
        let _ = done.send(result);
    })?;
    Ok(finished)
}

#[cfg(unix)]
async fn reload_on_sighup(state: AppState) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload only through /admin/reload");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the bundle");
        // Success and refusal are both logged and counted by `reload`.
        let _ = state.reload().await;
    }
}

pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

pub(crate) fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
