# syntax=docker/dockerfile:1
# handoff: gRPC service deciding when a customer-service bot hands a conversation to a person.
#
#   docker build -t handoff .
#   docker run --rm -p 50051:50051 -p 9464:9464 handoff
#   grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
#
# The image serves the default model (models/handoff-zh-en/2.2.2) with the example policy
# (config/policy.toml, reloaded on change or SIGHUP). Mount another config and pass `--config`, or
# set HANDOFF_* variables; deploy/kubernetes/ shows a full set-up.

############################ build ############################
FROM rust:1.95-bookworm AS build

# protoc for build.rs (tonic-prost-build). Debian stable replaces package versions in its point
# releases (bookworm ships protobuf-compiler 3.21.12-3+deb12u1 today), so an exact pin would break
# the build at the next point release; the base image tag pins the Debian release instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src

# Caches keep the crate downloads and the build between image builds; the binary is copied out of
# the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin handoff \
    && install -D -m 0755 target/release/handoff /out/handoff

############################ runtime ############################
FROM debian:bookworm-slim

# The binary needs only glibc and libgcc_s (TLS is rustls, tokenizers and tract are linked in):
# no packages to install. A fixed non-root uid/gid so Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 handoff \
    && useradd --system -l --uid 10001 --gid handoff --no-create-home \
       --home-dir /app --shell /usr/sbin/nologin handoff

COPY --from=build /out/handoff /usr/local/bin/handoff

# Relative defaults (model_dir, model_repository = "models", config/policy.toml) resolve here.
WORKDIR /app
COPY --chown=root:root config/ ./config/
COPY --chown=root:root models/handoff-zh-en/2.2.2/ ./models/handoff-zh-en/2.2.2/

# Listen beyond loopback inside the container (the binary's defaults are 127.0.0.1). Environment
# variables override a --config file; flags override both.
ENV HANDOFF_GRPC_ADDR=0.0.0.0:50051 \
    HANDOFF_METRICS_ADDR=0.0.0.0:9464 \
    RUST_LOG=info

# gRPC API (handoff.v1.Handoff, handoff.v1.ModelAdmin), grpc.health.v1.Health and reflection.
EXPOSE 50051
# Prometheus metrics, plain HTTP: GET /metrics.
EXPOSE 9464

USER 10001:10001

# `handoff health` is a gRPC health client in the binary: exit 0 when the server says SERVING
# (a model is loaded and the server is not draining).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["handoff", "health", "--addr", "127.0.0.1:50051"]

# SIGTERM: health turns NOT_SERVING, listeners close after drain_ms, accepted calls are answered.
STOPSIGNAL SIGTERM
ENTRYPOINT ["handoff"]
CMD ["serve", "--policy", "config/policy.toml"]
