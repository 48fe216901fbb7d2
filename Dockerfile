# syntax=docker/dockerfile:1
# Warden's container image: build the release binary, then copy it alone into a distroless
# runtime (glibc, libgcc_s and CA certificates; no shell, no package manager), running as the
# non-root user 65532. Build: `docker build -t warden .`  Run: see docker-compose.yml and
# deploy/helm/warden. The binary needs at run time only libc, libm and libgcc_s (ldd), which
# the cc image has; stdio upstreams would also need their own programs in the image (see
# deploy/helm/warden/README.md, "Stdio upstreams and the sandbox").
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK in the image: distroless has no shell or curl; Docker Compose's HAProxy and Kubernetes probe GET /healthz and /readyz on the listen port instead

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what the build reads: the workspace, its lock file and the corpus the detectors embed.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY corpus ./corpus
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p warden \
    && install -D -m 0755 target/release/warden /out/warden \
    && install -d -m 0755 /out/etc-warden /out/var-lib-warden

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="warden" \
      org.opencontainers.image.description="Warden: a security gateway for the Model Context Protocol" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/warden /usr/local/bin/warden
# The config is mounted at /etc/warden (read-only); state (kill switches, pins, audit keys, a
# local audit trail) goes to /var/lib/warden, a volume: the root filesystem can be read-only.
COPY --from=builder --chown=65532:65532 /out/var-lib-warden /var/lib/warden
COPY --from=builder /out/etc-warden /etc/warden
USER 65532:65532
WORKDIR /var/lib/warden
VOLUME ["/var/lib/warden"]
# 8080: the MCP listener ([listen] addr); 9464: Prometheus metrics ([telemetry] metrics_addr).
EXPOSE 8080 9464
ENTRYPOINT ["/usr/local/bin/warden"]
CMD ["serve", "--config", "/etc/warden/warden.toml"]
