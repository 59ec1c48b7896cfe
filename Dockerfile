# syntax=docker/dockerfile:1
# Build:      docker build -t spangate .
# First look: docker run --rm -p 4318:4318 -p 9400:9400 spangate
#   (the default command, `spangate dev --host 0.0.0.0`: embedded dev IdP and
#   recording upstream; the dev IdP mints tokens for anyone, so never expose it
#   beyond your machine)
# Production: mount a config and policies and run serve, e.g.
#   docker run -v $PWD/spangate.yaml:/etc/spangate/spangate.yaml:ro \
#     -v $PWD/policies:/etc/spangate/policies:ro -p 4318:4318 spangate \
#     serve --config /etc/spangate/spangate.yaml --log-format json
FROM rust:1.95-bookworm AS build
WORKDIR /src
# cmake/clang are not needed: aws-lc-sys builds with the C compiler in the image.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY policies ./policies
COPY benches ./benches
RUN cargo build --release --locked --bin spangate \
    && strip target/release/spangate \
    && mkdir -p /out/var/lib/spangate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/spangate /usr/local/bin/spangate
COPY deploy/spangate.yaml /etc/spangate/spangate.yaml
COPY policies /etc/spangate/policies
COPY deploy/examples /etc/spangate/examples
# The spool and the secrets store of the example config: writable by the
# runtime user, so a named volume mounted here inherits the ownership.
COPY --from=build --chown=65532:65532 /out/var/lib/spangate /var/lib/spangate
USER 65532:65532
# 4318 OTLP/HTTP; 4317 OTLP/gRPC (`serve` with the shipped config); 9400 the dev IdP of the default `dev` command; 9464
# metrics and 9901 admin of `serve` (both loopback unless configured).
EXPOSE 4317 4318 9400 9464 9901
ENTRYPOINT ["/usr/local/bin/spangate"]
CMD ["dev", "--host", "0.0.0.0"]
