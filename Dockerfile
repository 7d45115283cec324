# A Plexus node image: built from this repository, run as a non-root user.
#   docker build --build-arg PLEXUS_COMMIT=$(git rev-parse --short=12 HEAD) -t plexus .
#   docker run --rm -v plexus-data:/var/lib/plexus -v /etc/plexus:/etc/plexus:ro \
#       -p 7000:7000 -p 7070:7070 plexus node --config /etc/plexus/node.toml
# The image holds the binary and CA certificates only; config, allowlist and TLS
# files come from the host (deploy/node.toml is an example).

FROM rust:1-bookworm AS build
# rocksdb's bindgen needs libclang; its C++ builds with clang or gcc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev clang pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The build has no .git: the commit `plexus --version` names comes from here.
ARG PLEXUS_COMMIT=unknown
ENV PLEXUS_COMMIT=${PLEXUS_COMMIT}
RUN cargo build --release --locked --bin plexus \
 && install -m 0755 target/release/plexus /plexus

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/plexus --create-home \
      --shell /usr/sbin/nologin plexus
COPY --from=build /plexus /usr/local/bin/plexus
USER plexus
WORKDIR /var/lib/plexus
VOLUME ["/var/lib/plexus"]
EXPOSE 7000 7070
ENTRYPOINT ["plexus"]
CMD ["node", "--config", "/etc/plexus/node.toml"]
