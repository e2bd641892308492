# Debian's redis-server in place of redis:7-alpine (deploy/compose.podman.yaml). As in the official image, a
# redis-server started without a config file runs with protected mode off: the compose network is its only client.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && printf '#!/bin/sh\nif [ "$1" = redis-server ]; then shift; exec redis-server --protected-mode no "$@"; fi\nexec "$@"\n' \
       > /usr/local/bin/entrypoint && chmod 755 /usr/local/bin/entrypoint
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/entrypoint"]
CMD ["redis-server"]
