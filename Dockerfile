# syntax=docker/dockerfile:1
# Build: a static binary (no cgo), so the runtime image needs no libc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hbrbot ./cmd/hbrbot

# Run: distroless static carries CA certificates and a non-root user, and
# nothing else (no shell).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/hbrbot /hbrbot
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/hbrbot"]
