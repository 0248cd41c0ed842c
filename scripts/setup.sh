#!/usr/bin/env bash
# Installs everything Lazarus needs on Debian 12, as root: the Debian packages it builds
# and tests with, and CRIU >= 4.2 built from Debian's forky source package (Debian 12's
# own criu 3.17 cannot run on kernels >= 6.13). Idempotent: a second run takes seconds.
set -euo pipefail

CRIU_MIN=4.2
CRIU_SUITE=forky
CRIU_PREFIX=/usr/local
CACHE=/var/cache/lazarus
PATCHES=$(cd "$(dirname "$0")" && pwd)/criu-patches
# What the installed CRIU was built from: the tarball and our patches. A change rebuilds it.
STAMP=$CRIU_PREFIX/share/lazarus/criu-build.stamp

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs Debian packages and CRIU)"

PACKAGES=(
  build-essential cmake pkgconf git curl ca-certificates xz-utils patch
  clang libclang-rt-14-dev
  protobuf-compiler libprotobuf-dev
  libboost-dev libboost-program-options-dev
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libzstd-dev libxxhash-dev libsqlite3-dev libssl-dev
  iproute2 nftables procps psmisc util-linux
  # CRIU's build dependencies
  libprotobuf-c-dev protobuf-c-compiler libnl-3-dev libnet1-dev libcap-dev libbsd-dev
  libgnutls28-dev libnftables-dev uuid-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ $p == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

criu_version_ok() {
  local v
  v=$(criu --version 2>/dev/null | awk '/^Version:/ {print $2}') || return 1
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$CRIU_MIN" "$v" | sort -V | head -n1)" = "$CRIU_MIN" ]
}

# The archive URI of the machine's own Debian sources (deb822 or one-line format); the
# host name is never written into this repository.
debian_archive_uri() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{for (i = 2; i <= NF; i++) print $i}' | grep -vE 'security|updates' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb(-src)?[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | grep -v security | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | head -n1 || true)
  fi
  [ -n "$uri" ] || die "cannot find a Debian archive URI in the apt sources"
  printf '%s\n' "$uri"
}

build_criu() {
  local uri work aptdir line url name sha
  uri=$(debian_archive_uri)
  work="$CACHE/criu"
  aptdir="$work/apt"
  mkdir -p "$aptdir/lists/partial"
  # A private apt configuration: the machine's own sources and lists stay untouched.
  printf 'deb-src %s %s main\n' "$uri" "$CRIU_SUITE" > "$aptdir/sources.list"
  local aptopts=(-o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
                 -o Dir::State::Lists="$aptdir/lists" -o APT::Sandbox::User=root)
  log "fetching the $CRIU_SUITE source index"
  apt-get "${aptopts[@]}" update -q >/dev/null
  # Run where no tarball lies, or apt says "Skipping already downloaded file" instead.
  line=$(cd "$aptdir" && apt-get "${aptopts[@]}" --print-uris source criu \
         | grep -E "^'[^']+/criu_[0-9.]+\.orig\.tar\.[a-z]+'" | head -n1 || true)
  [ -n "$line" ] || die "apt-get --print-uris source criu listed no orig tarball"
  url=$(awk '{print $1}' <<<"$line" | tr -d "'")
  name=$(awk '{print $2}' <<<"$line")
  sha=$(grep -oE 'SHA256:[0-9a-f]{64}' <<<"$line" | cut -d: -f2)
  [ -n "$sha" ] || die "no SHA-256 for $name in: $line"
  if ! echo "$sha  $work/$name" | sha256sum -c --status 2>/dev/null; then
    log "downloading $name"
    curl -fsSL -o "$work/$name.part" "$url" || die "download of $name failed"
    echo "$sha  $work/$name.part" | sha256sum -c --status || die "SHA-256 mismatch for $name"
    mv "$work/$name.part" "$work/$name"
  fi
  rm -rf "$work/src" && mkdir -p "$work/src"
  tar -xf "$work/$name" -C "$work/src" --strip-components=1
  # Our patches to CRIU (each says why in its header).
  for p in "$PATCHES"/*.patch; do
    [ -e "$p" ] || continue
    log "applying $(basename "$p")"
    patch -d "$work/src" -p1 --quiet < "$p" || die "patch $(basename "$p") does not apply to $name"
  done
  log "building CRIU from $name"
  make -C "$work/src" -j"$(nproc)" criu lib >"$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; die "CRIU build failed (log: $work/build.log)"; }
  # SKIP_PIP_INSTALL: only the C library and headers; the Python bindings are not needed.
  make -C "$work/src" PREFIX="$CRIU_PREFIX" SKIP_PIP_INSTALL=1 install-criu install-lib >>"$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; die "CRIU install failed (log: $work/build.log)"; }
  ldconfig
  # rpc.proto is the contract we compile against; keep it where the build finds it.
  install -D -m 0644 "$work/src/images/rpc.proto" "$CRIU_PREFIX/include/criu/rpc.proto"
  mkdir -p "$(dirname "$STAMP")"
  build_id > "$STAMP"
  hash -r
}

build_id() {
  { echo "criu-$CRIU_SUITE"; cat "$PATCHES"/*.patch 2>/dev/null; } | sha256sum | cut -d' ' -f1
}

if ! criu_version_ok || [ ! -f "$CRIU_PREFIX/include/criu/rpc.proto" ] \
   || [ "$(cat "$STAMP" 2>/dev/null)" != "$(build_id)" ]; then
  build_criu
fi
criu_version_ok || die "criu >= $CRIU_MIN is not on PATH after the build ($(command -v criu || echo none))"
if ! out=$(criu check 2>&1); then
  printf '%s\n' "$out" >&2
  die "'criu check' failed: this kernel cannot checkpoint with $(criu --version | head -n1)"
fi
log "ready: $(criu --version | head -n1), protoc $(protoc --version | awk '{print $2}')"
