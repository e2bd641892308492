# Stand-in for rust:1.95-slim-bookworm where no registry is reachable (scripts/check-image --full): the host's Rust
# toolchain, copied into the build context by the script, on the local Debian base, laid out as the official image
# (CARGO_HOME=/usr/local/cargo, gcc and libc6-dev for crates that build C).
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
# The machine's own certificate authorities (a TLS-intercepting egress proxy's, here), copied in by the script.
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$PATH
