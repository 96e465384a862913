#!/usr/bin/env bash
# Builds the moat container image with podman, without a Docker daemon (docs/deployment.md).
#
# usage: deploy/image.sh                build localhost/moat:latest from deploy/Dockerfile
#        deploy/image.sh podman ARGS... run podman on the same image storage
#                                       (e.g. deploy/image.sh podman images)
#
# Everything lives under MOAT_IMAGE_DIR (default /tmp/moat-image): podman's storage
# (--root/--runroot), a containers.conf (runtime runc, ulimits no higher than the host's)
# and, when no debian:bookworm-slim image is there yet, a debootstrap'ed bookworm imported
# under that name so `podman build --pull=never` needs no registry. apt-get inside the build
# needs Debian's mirror. Installs podman, runc and debootstrap when missing (needs root).
# MOAT_IMAGE sets the tag (default localhost/moat:latest).
set -euo pipefail
cd "$(dirname "$0")/.."

W=${MOAT_IMAGE_DIR:-/tmp/moat-image}
IMAGE=${MOAT_IMAGE:-localhost/moat:latest}
BASE=docker.io/library/debian:bookworm-slim
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

need=()
for t in podman runc debootstrap; do command -v "$t" >/dev/null || need+=("$t"); done
if [[ ${#need[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || { echo "image.sh: needs ${need[*]} (run as root to install)" >&2; exit 1; }
    echo "image.sh: installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

mkdir -p "$W"
nofile=$(ulimit -Hn)
[[ $nofile == unlimited ]] && nofile=1048576
cat >"$W/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$W/containers.conf"
P=(podman --root "$W/storage" --runroot "$W/run")

if [[ ${1-} == podman ]]; then
    shift
    exec "${P[@]}" "$@"
fi
[[ $# -eq 0 ]] || { sed -n '2,13s/^# \{0,1\}//p' "$0" >&2; exit 2; }

start=$SECONDS
if ! "${P[@]}" image exists "$BASE"; then
    if [[ ! -x $W/rootfs/bin/sh ]]; then
        echo "image.sh: debootstrap bookworm into $W/rootfs (log: $W/debootstrap.log)" >&2
        rm -rf "$W/rootfs"
        debootstrap --variant=minbase bookworm "$W/rootfs" "$MIRROR" >"$W/debootstrap.log" 2>&1 ||
            { tail -n 20 "$W/debootstrap.log" >&2; exit 1; }
    fi
    # Trim it the way the official -slim images are (debuerreotype): no documentation,
    # manuals or translations, now or from later installs, and no apt caches in layers.
    r=$W/rootfs
    mkdir -p "$r/etc/dpkg/dpkg.cfg.d" "$r/etc/apt/apt.conf.d"
    cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
CFG
    cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
    printf 'Acquire::Languages "none";\n' >"$r/etc/apt/apt.conf.d/docker-no-languages"
    printf 'APT::AutoRemove::SuggestsImportant "false";\n' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
    find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$r"/usr/share/{info,man,groff,linda,lintian,locale}/* \
        "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
        "$r"/var/log/apt/* "$r"/var/log/dpkg.log "$r"/var/log/bootstrap.log
    echo "image.sh: importing it as $BASE" >&2
    tar -C "$r" -c . | "${P[@]}" import --change 'CMD ["bash"]' - "$BASE" >"$W/import.log" 2>&1 ||
        { cat "$W/import.log" >&2; exit 1; }
fi

# --format docker: the OCI image format has no HEALTHCHECK. --network host: apt-get in the
# RUN steps reaches the mirror without a container network being set up.
echo "image.sh: building $IMAGE (log: $W/build.log)" >&2
if ! "${P[@]}" build --pull=never --format docker --network host \
        -f deploy/Dockerfile -t "$IMAGE" . >"$W/build.log" 2>&1; then
    tail -n 40 "$W/build.log" >&2
    echo "image.sh: build failed (full log: $W/build.log)" >&2
    exit 1
fi
size=$("${P[@]}" image inspect -f '{{.Size}}' "$IMAGE")
echo "image.sh: built $IMAGE ($((size / 1000000)) MB) in $((SECONDS - start)) s" >&2
echo "image.sh: use it with: deploy/image.sh podman run ... $IMAGE" >&2
