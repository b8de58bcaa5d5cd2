# Container image for the control plane and the bootstrap init container.
# (Not built by the test suite: this machine has no container engine.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /shadowplane ./cmd/shadowplane

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /shadowplane /shadowplane
USER 65532:65532
ENTRYPOINT ["/shadowplane"]
