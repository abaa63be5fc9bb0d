# Kairo in a container: a build stage with the Rust toolchain, then a small
# Debian runtime with the binary only, run as a non-root user.
#
#   docker build --build-arg SOURCE_REVISION=$(git rev-parse --short=12 HEAD) -t kairo .
#   docker run -d -p 8080:8080 -v kairo-data:/var/lib/kairo \
#     -v "$PWD/scripts:/etc/kairo/scripts:ro" -v "$PWD/handlers:/etc/kairo/handlers:ro" \
#     --env-file kairo.env kairo

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The revision `kairo --version` names (the repository is not copied in).
ARG SOURCE_REVISION=unknown
ENV SOURCE_REVISION=${SOURCE_REVISION}
RUN cargo build --release --locked --bin kairo

FROM debian:bookworm-slim
# CA certificates for HTTPS to the SORACOM API, Slack and webhooks.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/kairo --shell /usr/sbin/nologin kairo \
 && mkdir -p /var/lib/kairo /etc/kairo/scripts /etc/kairo/handlers \
 && chown kairo:kairo /var/lib/kairo \
 && chmod 0700 /var/lib/kairo
COPY --from=build /src/target/release/kairo /usr/local/bin/kairo
COPY scripts/ /etc/kairo/scripts/
COPY handlers/ /etc/kairo/handlers/
ENV KAIRO_SERVER__LISTEN=0.0.0.0:8080 \
    KAIRO_STORE__PATH=/var/lib/kairo/kairo \
    KAIRO_RULES__DIR=/etc/kairo/scripts \
    KAIRO_HANDLERS__DIR=/etc/kairo/handlers
USER 10001:10001
WORKDIR /var/lib/kairo
VOLUME ["/var/lib/kairo"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["kairo", "health"]
ENTRYPOINT ["kairo"]
CMD ["run"]
