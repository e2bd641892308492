# Stand-in for python:3.11-slim-bookworm where no registry is reachable (scripts/check-image --full): Debian
# bookworm's Python 3.11 with venv and pip on the local Debian base.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv python3-pip \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
# The machine's own certificate authorities (a TLS-intercepting egress proxy's, here), copied in by the script.
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
