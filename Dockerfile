# The mlctl image: the `mlctl` binary of this checkout (with the SageMaker and Azure ML
# providers) on Debian slim, entrypoint docker/entrypoint.sh.
#
#   docker build -t REGISTRY/mlctl:$(cargo pkgid -p mlctl-cli | sed 's/.*[#@]//') .
#   docker push REGISTRY/mlctl:...
#
# Then name it in the target (`image: REGISTRY/mlctl:...`): Azure ML serves every model
# version with it (no arguments: `mlctl serve` on $MLCTL_MODEL_DIR, port 8080) and runs
# built-in training in it (`mlctl __train-builtin ...`). See providers/azureml/README.md.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mlctl

FROM debian:bookworm-slim
# ca-certificates for HTTPS to the clouds; git, since `mlctl apply` reads the spec at a
# revision of the project's repository.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mlctl /usr/local/bin/mlctl
COPY docker/entrypoint.sh /usr/local/bin/mlctl-entrypoint
ENV MLCTL_SERVE_PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mlctl-entrypoint"]
