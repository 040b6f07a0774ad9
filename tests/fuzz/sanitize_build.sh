#!/usr/bin/env bash
# sanitize_build.sh — makes (or updates) the sanitizer build: ASan + UBSan, CPU only.
#   tests/fuzz/sanitize_build.sh [DIR]        (default: $AST_SAN_BUILD or <source>/build-san)
# With clang and libFuzzer it is a clang build with -Dfuzz=true (the fuzz targets too), else a
# gcc build without them. Used by test.sh (the CPU suite under the sanitizers) and fuzz_smoke.
# Prints one line saying which it is.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-${AST_SAN_BUILD:-$src/build-san}}
have_fuzzer() {
    command -v clang >/dev/null 2>&1 || return 1
    local t
    t=$(mktemp -d)
    printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$t/f.c"
    clang -fsanitize=fuzzer,address,undefined -fopenmp "$t/f.c" -o "$t/f" >/dev/null 2>&1
    local rc=$?
    rm -rf "$t"
    return $rc
}
mkdir -p "$dir"
exec 9>"$dir/.sanitize_build.lock" # one builder at a time (test.sh and fuzz_smoke may share it)
flock 9
if [ ! -f "$dir/build.ninja" ]; then
    opts=(-Db_sanitize=address,undefined -Dcuda=disabled -Dbuildtype=debugoptimized)
    if have_fuzzer; then export CC=clang; opts+=(-Dfuzz=true); fi # libFuzzer needs clang
    meson setup "$dir" "$src" "${opts[@]}" >"$dir/.setup.log" 2>&1 \
        || { cat "$dir/.setup.log"; exit 1; }
fi
ninja -C "$dir" >"$dir/.build.log" 2>&1 || { tail -n 40 "$dir/.build.log"; exit 1; }
if [ -x "$dir/tests/fuzz/fuzz_safetensors" ]; then
    echo "sanitizer build $dir: clang, ASan+UBSan, fuzz targets"
else
    echo "sanitizer build $dir: $(meson introspect --compilers "$dir" 2>/dev/null | grep -o '"id": *"[a-z]*"' | head -1 | grep -o '[a-z]*"$' | tr -d '"'), ASan+UBSan, no fuzz targets (clang with libFuzzer not found)"
fi
