# xgserve: build with the same cargo command as CI, run as a non-root user on a slim base.
# No Docker engine runs on the development machines; CI lints this file with hadolint.

FROM rust:1.95-slim-bookworm AS build
# cmake builds librdkafka for the stream bridge (feature `stream`); versions follow the base image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ make libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in their own layer: a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/engine.rs \
 && echo 'fn main() {}' > benches/stream.rs \
 && cargo build --release --locked --features stream \
 && rm -rf src benches
COPY build.rs ./
COPY src src
COPY benches benches
# Make cargo see the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --features stream

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home xgserve
WORKDIR /app
COPY --from=build /src/target/release/xgserve /usr/local/bin/xgserve
COPY models models
USER 10001
# 3000: the HTTP server; 8001: its gRPC service; 3001: the bridge's health and metrics (`xgserve stream`).
EXPOSE 3000 8001 3001
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["xgserve", "healthcheck"]
ENTRYPOINT ["xgserve"]
CMD ["serve"]
