//! `xgserve stream`: load the bundle (or point at a remote /predict), open the health and metrics
//! listener, and run the Kafka bridge until SIGTERM/SIGINT, which finishes the batch and commits.

use crate::cli::StreamArgs;

#[cfg(not(feature = "stream"))]
pub fn run(_: StreamArgs) -> anyhow::Result<()> {
    anyhow::bail!("this xgserve was built without the bridge; build it with `cargo build --release --features stream`")
}

#[cfg(feature = "stream")]
pub fn run(args: StreamArgs) -> anyhow::Result<()> {
    super::serve::init_logging(&args.log_format);
    tracing::info!(?args, "effective configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bridge(args))
}

#[cfg(feature = "stream")]
async fn bridge(args: StreamArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Context;

    use crate::stream::debezium::Schemas;
    use crate::stream::{kafka, metrics, pg, remote, Bridge, Pricer};

    let metrics = Arc::new(metrics::Metrics::new());
    let pricer = match &args.predict_url {
        Some(url) => Pricer::Remote(Box::new(remote::Client::new(
            url,
            Duration::from_millis(args.predict_timeout_ms),
            args.predict_token.as_ref().map(|t| t.0.clone()),
            metrics.clone(),
        )?)),
        None => {
            let model = crate::bundle::Model::load(&args.model)?;
            tracing::info!(name = %model.manifest.name, version = %model.manifest.version,
                digest = %model.digest, traversal = model.forest.traversal().name(), "model loaded and checked");
            Pricer::local(model)
        }
    };
    let pairs = |options: &[crate::cli::KafkaOption]| -> Vec<(String, String)> {
        options.iter().map(|o| (o.key.clone(), o.value.clone())).collect()
    };
    let options = kafka::Options {
        shared: pairs(&args.kafka_option),
        consumer: pairs(&args.consumer_option),
        producer: pairs(&args.producer_option),
    };
    options.check()?;
    let sink = match &args.pg_sink {
        Some(url) => Some(pg::Sink::connect(&url.0, &args.pg_table, &args.pg_key).await?),
        None => None,
    };
    let address = format!("{}:{}", args.metrics_host, args.metrics_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(address = %listener.local_addr()?, "health and metrics listening");
    let router = metrics::router(metrics.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let bridge = Bridge {
        pricer,
        columns: args.column_map.clone(),
        price_field: args.price_field.clone(),
        price_format: args.price_format,
        metrics,
        schemas: Arc::new(Schemas::new(&args.price_field, args.price_format)),
        keep_rows: sink.is_some(),
    };
    let config = kafka::KafkaConfig {
        brokers: args.brokers.clone(),
        group_id: args.group_id.clone(),
        source_topics: args.source_topics.clone(),
        sink_topic: args.sink_topic.clone(),
        dead_letter_topic: args.dead_letter_topic.clone(),
        max_batch: args.max_batch.max(1),
        batches_in_flight: usize::from(args.batches_in_flight),
        linger: Duration::from_millis(args.batch_linger_ms),
        handover: Duration::from_millis(args.handover_timeout_ms),
        options,
    };
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(bridge.pricer.clone()));
    kafka::run(config, bridge, sink, super::serve::shutdown_signal()).await
}

/// SIGHUP reloads the bundle, as in `serve`: checked, then swapped in for the batches that follow;
/// a refused bundle is logged and the old model keeps pricing.
#[cfg(all(feature = "stream", unix))]
async fn reload_on_sighup(pricer: crate::stream::Pricer) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; the model is not reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the bundle");
        if let Err(error) = pricer.reload().await {
            tracing::error!(%error, "reload refused; the previous model keeps pricing");
        }
    }
}
