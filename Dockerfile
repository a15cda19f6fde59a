# hexbroker: a small runtime image with one static-ish binary.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY fake-hex ./fake-hex
COPY src ./src
COPY migrations ./migrations
COPY openapi.yaml ./openapi.yaml
RUN cargo build --release --locked -p hexbroker --bin hexbroker

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --create-home hexbroker
COPY --from=build /src/target/release/hexbroker /usr/local/bin/hexbroker
USER hexbroker
WORKDIR /data
ENV HEXBROKER_LISTEN=0.0.0.0:8080 \
    HEXBROKER_DATABASE_URL=sqlite:///data/hexbroker.db
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["hexbroker"]
CMD ["serve"]
