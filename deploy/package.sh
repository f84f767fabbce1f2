#!/bin/sh
# deploy/package.sh - builds the Debian package (build-pkg/sharepulse_*.deb)
# with an installation prefix of /usr, so that the unit, the config in
# /etc/sharepulse and the binaries land where Debian expects them.
#   sudo dpkg -i build-pkg/sharepulse_*.deb
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cmake -S . -B build-pkg -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
ninja -C build-pkg sharepulsed sp-loadgen
(cd build-pkg && cpack -G DEB >/dev/null)
ls "$ROOT"/build-pkg/sharepulse_*.deb
