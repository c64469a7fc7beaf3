#!/usr/bin/env bash
# Prepare rootful podman on a Debian machine that has no container registry:
#   - installs podman, runc, fuse-overlayfs and debootstrap (Debian packages) when missing;
#   - writes a containers.conf that selects runc (crun fails on cgroups v1 hybrid hosts) and sets
#     default ulimits the container may keep without CAP_SYS_RESOURCE;
#   - makes a local Debian base image (debootstrap minbase from this machine's own Debian mirror)
#     and imports it as localhost/debian:<codename>, unless it is already there.
# Prints the lines to use the result, e.g.:  eval "$(scripts/podman_setup.sh --print-env)"
#
#   scripts/podman_setup.sh               # set up (idempotent; ~75 s the first time)
#   scripts/podman_setup.sh --print-env   # only print CONTAINERS_CONF=... and BASE_IMAGE=...
#
# Environment: EARMARK_PODMAN_DIR (where containers.conf and the rootfs go; default
# ~/.cache/earmark-podman), DEBIAN_MIRROR and DEBIAN_SUITE (default: read from apt's sources and
# /etc/os-release). Nothing here names a host: the mirror is the one apt already uses.
set -euo pipefail

DIR=${EARMARK_PODMAN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/earmark-podman}
CONF=$DIR/containers.conf
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

suite() {
    if [ -n "${DEBIAN_SUITE:-}" ]; then echo "$DEBIAN_SUITE"; return; fi
    . /etc/os-release
    echo "${VERSION_CODENAME:-bookworm}"
}

# The first Debian archive URI apt uses (deb822 .sources or one-line sources.list), not security.
mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' \
        | grep -v -- '-security' | head -n 1 || true)
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
            | grep -v -- '-security' | head -n 1 || true)
    fi
    [ -n "$uri" ] || { echo "no Debian mirror found in apt's sources; set DEBIAN_MIRROR" >&2; exit 1; }
    echo "$uri"
}

BASE=localhost/debian:$(suite)

if [ "${1:-}" = "--print-env" ]; then
    echo "export CONTAINERS_CONF=$CONF"
    echo "export BASE_IMAGE=$BASE"
    exit 0
fi

. /etc/os-release
if [ "${ID:-}" != debian ]; then
    echo "scripts/podman_setup.sh: this recipe is for Debian hosts (this is ${ID:-unknown});" \
        "elsewhere install podman and build FROM the default BASE_IMAGE (needs a registry)" >&2
    exit 1
fi

missing=""
for p in podman runc fuse-overlayfs debootstrap; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

mkdir -p "$DIR"
cat >"$CONF" <<CONF
# written by scripts/podman_setup.sh
[containers]
# podman's default raises the container's limits, which fails without CAP_SYS_RESOURCE
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun fails on cgroups v1 hybrid hosts; runc works
runtime = "runc"
CONF
export CONTAINERS_CONF=$CONF

if $SUDO env CONTAINERS_CONF="$CONF" podman image exists "$BASE"; then
    echo "$BASE is already here" >&2
else
    ROOTFS=$DIR/rootfs-$(suite)
    $SUDO rm -rf "$ROOTFS"
    echo "debootstrap $(suite) from $(mirror) (about a minute)..." >&2
    $SUDO debootstrap --variant=minbase "$(suite)" "$ROOTFS" "$(mirror)" >"$DIR/debootstrap.log" 2>&1 \
        || { tail -n 20 "$DIR/debootstrap.log" >&2; exit 1; }
    # the image gets the same sources apt uses here (the mirror and the security archive)
    if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
        $SUDO cp /etc/apt/sources.list.d/*.sources "$ROOTFS/etc/apt/sources.list.d/"
        $SUDO rm -f "$ROOTFS/etc/apt/sources.list"
    fi
    # what a base image needs none of: apt's caches and lists, docs, man pages, translations
    $SUDO rm -rf "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/info/*
    $SUDO tar -C "$ROOTFS" -c . | $SUDO env CONTAINERS_CONF="$CONF" podman import --quiet \
        --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    $SUDO rm -rf "$ROOTFS"
    echo "imported $BASE" >&2
fi

echo "export CONTAINERS_CONF=$CONF"
echo "export BASE_IMAGE=$BASE"
