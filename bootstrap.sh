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

DEBIAN_PACKAGES=(
  qemu-system-arm qemu-utils gcc-arm-linux-gnueabihf gcc make libc6-dev
  cpio gzip xz-utils ca-certificates python3-venv python3-pip gdb
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
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating the Python virtual environment in .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.testbed-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing testbed and its Python dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
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
