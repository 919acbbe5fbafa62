# powa-sentinel container image.
#   docker build -t powa-sentinel .
#   docker run --rm -v $PWD/powa-sentinel.toml:/etc/powa-sentinel/powa-sentinel.toml:ro \
#     -e POWA_SENTINEL__CHANNELS__OPS__KEY=… -p 9187:9187 powa-sentinel
# In the container the HTTP endpoints listen on 0.0.0.0:9187 (POWA_SENTINEL__HTTP__LISTEN),
# so that probes and Prometheus can reach them; publish the port only where needed.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin powa-sentinel

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin powa-sentinel \
 && install -d -o powa-sentinel -m 0700 /var/lib/powa-sentinel
COPY --from=build /src/target/release/powa-sentinel /usr/local/bin/powa-sentinel
COPY config/powa-sentinel.toml /etc/powa-sentinel/powa-sentinel.toml
# The image's own configuration keeps the state in the volume. Not an environment
# variable: `[state] dir` and `dsn` are alternatives, and a configuration of replicas
# (`dsn`) would have to unset it.
RUN sed -i 's|^# dir = "/var/lib/powa-sentinel"$|dir = "/var/lib/powa-sentinel"|' /etc/powa-sentinel/powa-sentinel.toml \
 && grep -q '^dir = "/var/lib/powa-sentinel"$' /etc/powa-sentinel/powa-sentinel.toml
USER powa-sentinel
ENV POWA_SENTINEL__HTTP__LISTEN=0.0.0.0:9187
EXPOSE 9187
VOLUME ["/var/lib/powa-sentinel"]
# SIGTERM is handled: pending report flushed, channels given collection.shutdown_deadline.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/powa-sentinel"]
CMD ["run", "--config", "/etc/powa-sentinel/powa-sentinel.toml"]
