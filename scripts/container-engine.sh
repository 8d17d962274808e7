#!/usr/bin/env bash
# Sourced by the container scripts: picks the container engine and the flags it needs here.
#
#   ENGINE=docker|podman   (override with CONTAINER_ENGINE=...)
#   engine ARGS...         runs the engine with the global flags this machine needs
#   ENGINE_RUN_FLAGS       extra flags for `run` (and `build`) on this machine
#
# docker is used when its daemon answers. Otherwise podman, installed from Debian when missing
# (apt-get, as root). Debian's podman here needs runc and cgroupfs (crun fails: "cgroups in
# hybrid mode not supported") and ulimits the machine allows (the defaults exceed them); host
# networking is the one network mode known to work here.

if [ -n "${CONTAINER_ENGINE:-}" ]; then
    ENGINE="$CONTAINER_ENGINE"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
else
    ENGINE=podman
fi

if [ "$ENGINE" = podman ]; then
    missing=""
    for tool in podman runc; do
        command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
    done
    if [ -n "$missing" ]; then
        if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
            echo "container: neither a docker daemon nor podman is available; install one" >&2
            exit 1
        fi
        echo "container: installing podman and runc from Debian" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null \
            || { apt-get update -qq >/dev/null \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null; }
    fi
    ENGINE_GLOBAL_FLAGS=(--runtime runc --cgroup-manager cgroupfs)
    ENGINE_RUN_FLAGS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --network host)
    # OCI images drop HEALTHCHECK: podman keeps it only in the docker image format.
    ENGINE_BUILD_FLAGS=(--format docker "${ENGINE_RUN_FLAGS[@]}")
else
    ENGINE_GLOBAL_FLAGS=()
    ENGINE_RUN_FLAGS=()
    ENGINE_BUILD_FLAGS=()
fi

engine() {
    "$ENGINE" "${ENGINE_GLOBAL_FLAGS[@]}" "$@"
}
