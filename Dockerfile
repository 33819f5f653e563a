# Build: docker build -t recipient-gateway .
# Run:   docker run -v /path/to/config:/etc/recipient-gateway:ro -v gateway-data:/var/lib/recipient-gateway \
#            -p 8443:8443 -p 9901:9901 recipient-gateway
# With the sqlite store, point `[store] path` at /var/lib/recipient-gateway/gateway.db (writable by
# the gateway's user); with postgres nothing is written locally.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin recipient-gateway \
 && strip target/release/recipient-gateway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway \
 && mkdir -p /var/lib/recipient-gateway \
 && chown 10001:10001 /var/lib/recipient-gateway
COPY --from=build /src/target/release/recipient-gateway /usr/local/bin/recipient-gateway
VOLUME /var/lib/recipient-gateway
USER 10001:10001
EXPOSE 8443 9901
ENTRYPOINT ["/usr/local/bin/recipient-gateway"]
CMD ["run", "--config", "/etc/recipient-gateway/gateway.toml"]
