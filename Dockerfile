# The controller image used by deploy/controller.yaml:
#   docker build -t ghcr.io/capstan-dev/capstan:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p capstan && strip target/release/capstan

FROM debian:bookworm-slim
# CA certificates for HTTPS Git remotes and registries; git (pushes of write-backs),
# openssh-client (git over SSH, SSH commit signatures) and gnupg (OpenPGP commit
# signatures). kubectl's kustomize and helm are optional renderers — add them in a
# derived image when Applications use them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git openssh-client gnupg \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/capstan /usr/local/bin/capstan
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/capstan"]
CMD ["controller", "--leader-elect"]
