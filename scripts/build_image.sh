#!/usr/bin/env bash
# Build earmark's container image with podman (or docker), CPU torch by default.
#
#   scripts/build_image.sh [EXTRA BUILD ARGS...]      e.g. --build-arg MODEL_DIR=docker/model
#
# Environment:
#   IMAGE          tag (default localhost/earmark:latest)
#   ENGINE         podman or docker (default: podman when installed)
#   BASE_IMAGE     base image; default: localhost/debian:<codename> when scripts/podman_setup.sh made it,
#                  else the Dockerfile's default (an official python slim image, from a registry)
#   TORCH_VERSION  default: the Makefile's
# With podman, what this machine's pip uses is lent to the build, read-only and at build time only:
# its CA bundle (PIP_CERT), local wheel folders and indexes (find-links, extra-index-url file://...)
# and its cache. A local CPU torch wheel of TORCH_VERSION is used instead of the PyTorch index.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/earmark:latest}
ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
TORCH_VERSION=${TORCH_VERSION:-$(sed -n 's/^TORCH_VERSION *:*= *//p' Makefile)}
PY=$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )

torch=$TORCH_VERSION
args=()

if [ "$ENGINE" = podman ]; then
    if [ -z "${CONTAINERS_CONF:-}" ] && [ -x scripts/podman_setup.sh ]; then
        eval "$(scripts/podman_setup.sh --print-env | grep CONTAINERS_CONF)"
        [ -f "$CONTAINERS_CONF" ] || unset CONTAINERS_CONF
    fi
    if [ -z "${BASE_IMAGE:-}" ]; then
        local_base=$(scripts/podman_setup.sh --print-env | sed -n 's/^export BASE_IMAGE=//p')
        if podman image exists "$local_base" 2>/dev/null; then BASE_IMAGE=$local_base; fi
    fi
    args+=(--network host --format docker --layers)

    pip_get() {  # a pip setting of this machine: the environment, else pip's config files
        local env=$1 key=$2
        if [ -n "${!env:-}" ]; then echo "${!env}"; return; fi
        "$PY" -m pip config get "global.$key" 2>/dev/null || true
    }
    cert=$(pip_get PIP_CERT cert)
    cert=${cert:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}
    if [ -n "$cert" ] && [ -f "$cert" ]; then
        args+=(-v "$(realpath "$cert"):/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
    fi
    # local wheel folders and file:// indexes: mounted at the same path, read-only
    links=()
    for link in $(pip_get PIP_FIND_LINKS find-links); do
        dir=${link#file://}
        if [ -d "$dir" ]; then links+=("$dir"); args+=(-v "$dir:$dir:ro"); fi
    done
    indexes=()
    for url in $(pip_get PIP_EXTRA_INDEX_URL extra-index-url); do
        dir=${url#file://}
        if [ "$dir" != "$url" ] && [ -d "$dir" ]; then
            indexes+=("$url")
            top=$(dirname "$dir")
            args+=(-v "$top:$top:ro")
        elif [ "$dir" = "$url" ]; then
            indexes+=("$url")
        fi
    done
    [ ${#links[@]} -eq 0 ] || args+=(--build-arg "PIP_FIND_LINKS=${links[*]}")
    [ ${#indexes[@]} -eq 0 ] || args+=(--build-arg "PIP_EXTRA_INDEX_URL=${indexes[*]}")
    for dir in "${links[@]}"; do
        if compgen -G "$dir/torch-${TORCH_VERSION}+cpu-*.whl" >/dev/null; then
            echo "using the local CPU torch wheel in $dir" >&2
            torch=$TORCH_VERSION+cpu
            args+=(--build-arg TORCH_INDEX_URL=)
            break
        fi
    done
    cache=$("$PY" -m pip cache dir 2>/dev/null || true)
    if [ -n "$cache" ] && [ -d "$cache" ]; then args+=(-v "$cache:/root/.cache/pip"); fi
fi

args+=(--build-arg "TORCH_VERSION=$torch")
base="the Dockerfile's default"
if [ -n "${BASE_IMAGE:-}" ]; then args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE"); base=$BASE_IMAGE; fi
echo "$ENGINE build -t $IMAGE (base: $base, torch $torch)" >&2
"$ENGINE" build "${args[@]}" "$@" -t "$IMAGE" -f Dockerfile .
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE: $((size / 1024 / 1024)) MiB" >&2
