#!/usr/bin/env bash
# setup.sh — install what the build needs (Debian 12 or Ubuntu, through apt) and build astraea
# into build/. Safe to run again: installs only what is missing, reconfigures only when needed.
#   ./setup.sh            install + build
#   ./setup.sh --no-apt   build only (you installed the packages yourself)
# Environment: MESON_ARGS (extra 'meson setup' arguments, e.g. -Dcuda=disabled), BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")"
build=${BUILD_DIR:-build}

# Build: compiler, meson/ninja, SQLite (search store), cJSON (profiles, configs), libpng + giflib
# (clip output), OpenMP (gcc). Tests: OpenMPI (multi-rank search test), clang + libFuzzer + clang's
# OpenMP (fuzz smoke and the sanitizer build, docs/fuzzing.md), gnuplot (Pareto plots).
pkgs="gcc meson ninja-build pkg-config libsqlite3-dev libcjson-dev libpng-dev libgif-dev
      libopenmpi-dev openmpi-bin gnuplot-nox clang libclang-rt-14-dev libomp-dev"

if [ "${1:-}" != "--no-apt" ] && command -v dpkg-query >/dev/null; then
    missing=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "setup: installing:$missing"
        sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
fi

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" ${MESON_ARGS:-}
fi
ninja -C "$build"
echo "setup: built into $build/ (tools: $build/astraea-generate, astraea-search, astraea-export, astraea-forward, astraea-bench)"
