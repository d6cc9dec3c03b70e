#!/usr/bin/env bash
# Set up testbed on a Debian 12 machine (as root) and run one of its jobs.
#
#   ./bootstrap.sh demo     install everything, build the board image, run the demo
#   ./bootstrap.sh test     install everything, build the board image, run the whole test suite
#   ./bootstrap.sh setup    install everything and build the board image only
#
# Extra arguments after `test` go to pytest. Safe to run again: each step
# skips what is already done.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-setup}"
shift || true

say() { printf '\n==> %s\n' "$*"; }

# Everything the image build, the tests and the demo need on top of a minimal Debian 12
# (debootstrap --variant=minbase); .ci/fresh-root proves the list complete in such a root.
# Installed with --no-install-recommends, so nothing here may rely on a Recommends:
# libc6-dev-armhf-cross is only recommended by gcc-arm-linux-gnueabihf, yet without it the
# cross compiler has no C library (no headers, nothing to link against).
DEBIAN_PACKAGES=(
  qemu-system-arm qemu-utils                        # the boards (qemu-img for snapshots by hand)
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross     # firmware and image helpers for armhf
  gcc libc6-dev make                                # firmware built for the host (tests)
  python3 python3-venv python3-pip                  # .venv
  ca-certificates                                   # PyPI over https
  cpio gzip xz-utils                                # initramfs checks, compressed files by hand
  gdb                                               # core files in the unit tests
  procps iproute2                                   # ps/pgrep/kill, ip (network namespaces)
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap.sh: installing Debian packages needs root (missing: ${missing[*]})" >&2
    exit 1
  fi
  # One index may fail while a mirror syncs; the install below says if a package is really missing.
  apt-get update || echo "bootstrap.sh: apt-get update reported an error; trying the install anyway" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating the Python virtual environment in .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.testbed-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  say "installing testbed's Python dependencies from requirements.lock (hashes checked) into .venv"
  # Exact versions and sha256 of every package, the build backend included (.ci/lock-deps
  # updates the lock); then testbed itself with nothing resolved or downloaded beside the lock.
  .venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  touch "$stamp"
fi

say "building the board image (cached by content hash)"
.venv/bin/testbed image build

case "$job" in
  setup) ;;
  demo)
    say "running the demo"
    exec .venv/bin/testbed demo "$@"
    ;;
  test)
    say "running the test suite (unit, service, firmware, e2e boards, load)"
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: $0 [setup|demo|test] [args...]" >&2
    exit 2
    ;;
esac
