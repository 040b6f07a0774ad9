#!/usr/bin/env bash
# fuzz_smoke.sh — the CI smoke run of every libFuzzer target (docs/fuzzing.md): makes the
# sanitizer build (tests/fuzz/sanitize_build.sh: clang, -Dfuzz=true, ASan+UBSan) and runs each
# target for $FUZZ_SECONDS (15) seconds from its seed corpus. Skips (77) with the reason when
# clang or libFuzzer is missing.
set -u
src=${AST_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
dir=${AST_SAN_BUILD:-$src/build-san}
if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz_smoke: SKIP: clang is not installed (setup.sh installs clang and libclang-rt-14-dev)"
    exit 77
fi
if ! out=$(bash "$src/tests/fuzz/sanitize_build.sh" "$dir" 2>&1); then
    echo "$out" | tail -n 40
    echo "fuzz_smoke: FAIL: the sanitizer build failed"
    exit 1
fi
echo "$out"
if [ ! -x "$dir/tests/fuzz/fuzz_safetensors" ]; then
    echo "fuzz_smoke: SKIP: no fuzz targets in $dir: clang cannot link libFuzzer (install libclang-rt-14-dev and libomp-dev), or $dir was configured without clang (remove it to remake it)"
    exit 77
fi
meson test -C "$dir" --suite fuzz --print-errorlogs --num-processes 1 --logbase fuzzlog
rc=$?
grep -hE "^(ok|FAIL) " "$dir/meson-logs/fuzzlog.txt" # one line per target: runs, corpus, crashes
exit $rc
