#!/usr/bin/env bash
# Builds and runs the modelstream container image with podman, offline: a private store
# under the build directory, a containers.conf that fits this kind of machine, and a
# debian:bookworm-slim base made from the Debian mirror apt already uses (no registry).
#
#   scripts/image.sh build         the base (once), then `podman build` of the Dockerfile:
#                                  localhost/modelstream:VERSION and :latest, exported to
#                                  BUILD_DIR/modelstream-image.tar (OCI archive)
#   scripts/image.sh base          only the base image (skipped when it is in the store)
#   scripts/image.sh podman ARGS   podman with the private store and configuration, e.g.
#                                  scripts/image.sh podman run --rm localhost/modelstream:latest
#   scripts/image.sh size          the image's size in bytes (podman's count)
#   scripts/image.sh clean         removes the private store
#
# The build directory is $B (default build), relative to the repository root; the store is
# $B/podman/{root,run}, the configuration $B/podman/containers.conf. Nothing under /etc is
# touched. Needs root, podman, runc and mmdebstrap (scripts/deps.sh installs them).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bdir=${B:-build}
case "$bdir" in /*) ;; *) bdir=$here/$bdir ;; esac
pdir=$bdir/podman
version=$(sed -n 's/^VERSION *:= *//p' "$here/Makefile" | head -n 1)
version=${version:-0.3.0}
image=localhost/modelstream
base=docker.io/library/debian:bookworm-slim
suite=bookworm
archive=$bdir/modelstream-image.tar

say() { echo "image: $*" >&2; }
die() { say "$*"; exit 1; }

# containers.conf: Debian's crun refuses this kind of VM's hybrid cgroups (runc does not);
# podman's default rlimits are above the sandbox's hard ones; no systemd or journald here.
setup() {
  mkdir -p "$pdir/root" "$pdir/run" "$pdir/tmp"
  local nofile conf
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  conf="[containers]
default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=32768:32768\"]

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
events_logfile_path = \"$pdir/events.log\"
tmp_dir = \"$pdir/run/libpod\"
"
  [ -f "$pdir/containers.conf" ] && [ "$(cat "$pdir/containers.conf")" = "${conf%$'\n'}" ] ||
    printf '%s' "$conf" >"$pdir/containers.conf"
}

pm() {
  CONTAINERS_CONF=$pdir/containers.conf TMPDIR=$pdir/tmp \
    podman --root "$pdir/root" --runroot "$pdir/run" "$@"
}

# The apt sources of this machine, as one-line entries for the chroot's sources.list: only
# bookworm's suites (bookworm, -updates, -security), component main. The mirrors come from
# the machine's configuration at build time; none is written into the repository.
mirrors() {
  local f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v suite="$suite" '
        function flush(   i, j, nu, ns, u, s) {
          if (types ~ /(^| )deb( |$)/ && uris != "" && suites != "") {
            nu = split(uris, u, " "); ns = split(suites, s, " ")
            for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
              if (s[j] == suite || index(s[j], suite "-") == 1) print "deb " u[i] " " s[j] " main"
          }
          types = ""; uris = ""; suites = ""
        }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]*#/ { next }
        tolower($1) == "types:" { $1 = ""; types = $0 }
        tolower($1) == "uris:" { $1 = ""; uris = $0 }
        tolower($1) == "suites:" { $1 = ""; suites = $0 }
        END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      # deb [options] URI SUITE COMPONENT...
      awk -v suite="$suite" '$1 == "deb" {
          i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite || index($(i + 1), suite "-") == 1) print "deb " $i " " $(i + 1) " main"
        }' "$f"
    done
  } | awk '!seen[$0]++'
}

ensure_base() {
  if pm image exists "$base"; then return 0; fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (scripts/deps.sh installs it)"
  local list=()
  mapfile -t list < <(mirrors)
  [ ${#list[@]} -gt 0 ] || die "no Debian $suite mirror in /etc/apt/sources.list{,.d}"
  say "making $base from this machine's Debian mirror (${#list[@]} apt sources, mmdebstrap minbase)"
  local start=$SECONDS
  # pipefail: a failed mmdebstrap fails the import instead of importing a partial tarball.
  mmdebstrap --variant=minbase --quiet --aptopt='Acquire::Retries "3"' "$suite" - "${list[@]}" |
    pm import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  say "base image ready ($((SECONDS - start)) s)"
}

build() {
  ensure_base
  local revision start=$SECONDS
  revision=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git -C "$here" status --porcelain 2>/dev/null)" ] && revision=$revision-dirty
  say "building $image:$version (podman build, --network host for the build stage's apt-get)"
  pm build --pull=never --network host --layers --force-rm --format docker \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    -t "$image:$version" -t "$image:latest" -f "$here/Dockerfile" "$here" >"$pdir/build.log" 2>&1 ||
    { tail -n 40 "$pdir/build.log" >&2; die "podman build failed (log: $pdir/build.log)"; }
  rm -f "$archive"
  pm save -q --format oci-archive -o "$archive" "$image:$version" >/dev/null
  local size
  size=$(pm image inspect --format '{{.Size}}' "$image:$version")
  say "built $image:$version and $image:latest in $((SECONDS - start)) s: $size bytes ($((size / 1000000)) MB)"
  say "OCI archive: $archive ($(du -m "$archive" | cut -f1) MiB): podman load -i FILE, or on a node"
  say "  ctr -n k8s.io images import FILE (the archive names it $image:$version)"
}

[ $# -ge 1 ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
cmd=$1
shift
[ "$(id -u)" -eq 0 ] || die "needs root (the private store is rootful)"
command -v podman >/dev/null || die "podman is missing (scripts/deps.sh installs it)"
setup
case "$cmd" in
  podman) pm "$@" ;;
  base) ensure_base ;;
  build) build ;;
  size) pm image inspect --format '{{.Size}}' "$image:$version" ;;
  mirrors) mirrors ;;
  clean)
    pm system reset -f >/dev/null 2>&1 || true
    # The overlay driver may leave its home mounted private; unmount before removing.
    findmnt -rn -o TARGET | grep -F "$pdir/" | sort -r | xargs -r -n 1 umount -l 2>/dev/null || true
    rm -rf "$pdir"
    ;;
  *) die "unknown command '$cmd' (build, base, podman, size, clean)" ;;
esac
