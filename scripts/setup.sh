#!/usr/bin/env bash
# Installs what mmd-synth needs on a fresh Debian/Ubuntu machine, idempotently:
# system libraries for headless OpenGL (EGL + Mesa), bsdtar (libarchive-tools, which
# unpacks .rar archives for mmdsynth ingest), a virtual environment with the
# package, and with --test the test extras and Debian's chromium for the GUI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

need=()
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libarchive-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "$want_test" = 1 ]; then
  for pkg in chromium fonts-noto-cjk; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
  # The reader's DataLoader tests use the CPU build of PyTorch (an optional extra).
  .venv/bin/python -m pip install -q "torch==2.13.0" || echo "setup: torch unavailable; reader DataLoader tests will be skipped"
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup: done"
