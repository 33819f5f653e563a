# Build: docker build -t recipient-gateway .
# Run:   docker run -v /path/to/config:/etc/recipient-gateway:ro -p 8443:8443 -p 9901:9901 \
#            --read-only -e GATEWAY_TAG_KEY=... recipient-gateway
# With the sqlite store, mount a volume at /var/lib/recipient-gateway and point `[store] path` at
# /var/lib/recipient-gateway/gateway.db; with postgres nothing is written locally, so the root
# filesystem can be read-only.
#
# Base images are pinned by version. To pin by digest as well, resolve the current digests
# (`docker buildx imagetools inspect rust:1.95.0-slim-bookworm`) and append `@sha256:…`.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:12.12-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin recipient-gateway \
 && strip target/release/recipient-gateway

FROM ${RUNTIME_IMAGE}
# Only CA roots for https upstreams and webhooks: no compiler, no package manager caches, no shell
# tools beyond the base image's.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway \
 && mkdir -p /var/lib/recipient-gateway /etc/recipient-gateway \
 && chown 10001:10001 /var/lib/recipient-gateway
COPY --from=build /src/target/release/recipient-gateway /usr/local/bin/recipient-gateway
VOLUME /var/lib/recipient-gateway
USER 10001:10001
EXPOSE 8443 9901
STOPSIGNAL SIGTERM
# /healthz on the admin port, with bash's /dev/tcp: no curl or wget in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/recipient-gateway"]
CMD ["run", "--config", "/etc/recipient-gateway/gateway.toml"]
