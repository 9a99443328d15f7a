# syntax=docker/dockerfile:1
# Build: a static binary (no cgo), so the runtime image needs no libc. The
# cache mounts keep the module and build caches between builds (BuildKit).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hbrbot ./cmd/hbrbot

# Run: distroless static carries CA certificates and a non-root user, and
# nothing else (no shell): the health check is the binary's own
# `hbrbot healthcheck`, which asks /readyz on HBRBOT_HTTP_ADDR's port.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="hbrbot" \
      org.opencontainers.image.description="Slack bot that upgrades Alibaba Cloud Backup (HBR) clients after an explicit approval" \
      org.opencontainers.image.source="https://github.com/hbrbot/hbrbot" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/hbrbot /hbrbot
USER nonroot:nonroot
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["/hbrbot", "healthcheck"]
ENTRYPOINT ["/hbrbot"]
