# rollguard's sidecar image: build on Debian bookworm, ship only the binary and the
# shared libraries it needs, run as an unprivileged user.
#
#   docker build -t example/rollguard:0.1.0 .
#   docker run --rm -v $PWD/config/examples:/etc/rollguard:ro example/rollguard:0.1.0 \
#       check --config /etc/rollguard/minimal.toml
#
# See deploy/kubernetes/ for the pod spec that runs it next to an application.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN ./scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DROLLGUARD_BUILD_TESTS=OFF -DROLLGUARD_BUILD_BENCH=OFF \
    && cmake --build /build -j"$(nproc)" --target rollguard \
    && strip /build/rollguard \
    && /build/rollguard check --config config/examples/minimal.toml

FROM debian:bookworm-slim AS runtime
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends \
        ca-certificates \
        libmicrohttpd12 \
        libcurl4 \
        libfmt9 \
        libprometheus-cpp-core1.0 \
        libre2-9 \
        libsimdjson14 \
        libspdlog1.10 \
        libssl3 \
        libsystemd0 \
        libtomlplusplus3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rollguard \
    && useradd --system --uid 10001 --gid rollguard --home-dir /var/lib/rollguard --shell /usr/sbin/nologin rollguard \
    && install -d -o rollguard -g rollguard -m 0750 /var/lib/rollguard \
    && install -d -m 0755 /etc/rollguard
COPY --from=build /build/rollguard /usr/bin/rollguard
COPY config/examples/minimal.toml /etc/rollguard/rollguard.toml
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["/usr/bin/rollguard"]
CMD ["run", "--config", "/etc/rollguard/rollguard.toml"]
