# hexbroker's images. `docker build .` makes the service (the last stage); `--target fake-hex`
# makes the fake Hex for demos (docker-compose.yml's `demo` profile).

# Dependencies first: the manifests with stub sources, so this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every change to the code.
FROM rust:1.95-slim-bookworm AS deps
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY fake-hex/Cargo.toml fake-hex/Cargo.toml
RUN mkdir -p src fake-hex/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > fake-hex/src/main.rs && touch fake-hex/src/lib.rs \
    && cargo build --release --locked -p hexbroker -p fake-hex

# The service. The stubs' build is newer than the copied sources, so touch them: cargo compares
# modification times.
FROM deps AS build
COPY src ./src
COPY migrations ./migrations
COPY openapi.yaml ./openapi.yaml
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked -p hexbroker --bin hexbroker

# The fake Hex.
FROM deps AS build-fake-hex
COPY fake-hex/src ./fake-hex/src
RUN touch fake-hex/src/main.rs fake-hex/src/lib.rs \
    && cargo build --release --locked -p fake-hex --bin fake-hex

FROM debian:bookworm-slim AS fake-hex
RUN groupadd --system --gid 10002 fakehex \
    && useradd --system --uid 10002 --gid 10002 --no-create-home fakehex
COPY --from=build-fake-hex /src/target/release/fake-hex /usr/local/bin/fake-hex
USER 10002:10002
EXPOSE 9090
ENTRYPOINT ["fake-hex"]
CMD ["--listen", "0.0.0.0:9090"]

# The runtime image: one binary, no shell tools needed (the health check is hexbroker's own).
FROM debian:bookworm-slim AS hexbroker
RUN groupadd --system --gid 10001 hexbroker \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --create-home hexbroker
COPY --from=build /src/target/release/hexbroker /usr/local/bin/hexbroker
USER 10001:10001
WORKDIR /data
ENV HEXBROKER_LISTEN=0.0.0.0:8080 \
    HEXBROKER_DATABASE_URL=sqlite:///data/hexbroker.db
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["hexbroker", "healthcheck", "--timeout", "3s"]
ENTRYPOINT ["hexbroker"]
CMD ["serve"]
