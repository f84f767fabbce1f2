#!/bin/sh
# Install the Debian 12 packages sharepulse needs to build, test and run its
# local stack. Idempotent: packages already present are left alone.
set -eu

PKGS="build-essential cmake ninja-build pkg-config git ca-certificates \
  librdkafka-dev libuv1-dev libjansson-dev libhiredis-dev \
  libcurl4-openssl-dev libmicrohttpd-dev libsystemd-dev libssl-dev \
  libcmocka-dev libinih-dev \
  redis-server redis-tools openjdk-17-jre-headless maven kcat \
  python3 python3-pytest python3-redis python3-confluent-kafka \
  python3-prometheus-client curl valgrind clang-14 libclang-rt-14-dev faketime \
  chromium wrk"
# The dashboard's browser test drives Debian's Chromium with npm's
# playwright-core: Node.js and npm from Debian unless a node is already here.
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && { echo "install-deps: all packages present"; exit 0; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
# The Debian package starts a system redis-server on 6379; the project runs its
# own on a port it chooses, so the system one is not needed, but is left alone.
