# syntax=docker/dockerfile:1
# Build: docker build -t spangate .
FROM rust:1.95-bookworm AS build
WORKDIR /src
# cmake/clang are not needed: aws-lc-sys builds with the C compiler in the image.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY policies ./policies
COPY benches ./benches
RUN cargo build --release --locked --bin spangate \
    && strip target/release/spangate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/spangate /usr/local/bin/spangate
COPY deploy/spangate.yaml /etc/spangate/spangate.yaml
COPY policies /etc/spangate/policies
USER 65532:65532
EXPOSE 4318 9464 9901
ENTRYPOINT ["/usr/local/bin/spangate"]
CMD ["serve", "--config", "/etc/spangate/spangate.yaml", "--log-format", "json"]
