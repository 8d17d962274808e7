#!/usr/bin/env bash
# `make image`: build the Mediaplane image (Dockerfile) with docker, or podman where no docker
# daemon runs. IMAGE names the result (default mediaplane:latest).
#
# Where the machine's TLS goes through its own CA (PIP_CERT set, as here), podman builds see
# that bundle read-only and pip uses it; nothing of it lands in the image.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-engine.sh

IMAGE="${IMAGE:-mediaplane:latest}"
bash scripts/container-base.sh

extra=()
if [ "$ENGINE" = podman ] && [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    extra+=(-v "$PIP_CERT:/etc/ssl/build-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/build-ca.crt)
fi
start=$(date +%s)
engine build "${ENGINE_BUILD_FLAGS[@]}" "${extra[@]}" -t "$IMAGE" -f Dockerfile .
size=$(engine image inspect "$IMAGE" --format '{{.Size}}')
echo "image: $IMAGE built with $ENGINE in $(( $(date +%s) - start )) s, $(( size / 1000000 )) MB"
