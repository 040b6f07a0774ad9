#!/usr/bin/env bash
# run_target.sh — one short libFuzzer run of a target from its seed corpus (the CI smoke run).
#   run_target.sh FUZZ_EXE SEED_CORPUS_DIR [SECONDS]     (default: $FUZZ_SECONDS or 15)
# The seed corpus is only read; new inputs go to a scratch folder that is removed. A crash, a
# leak, a timeout or a sanitizer report fails the test; the input is kept in
# $AST_BUILD_ROOT/fuzz-artifacts/ (reproduce: FUZZ_EXE that-file).
set -u
exe=${1:?fuzz executable}; seeds=${2:?seed corpus}; secs=${3:-${FUZZ_SECONDS:-15}}
name=$(basename "$exe")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/art"
"$exe" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/art/" "$work/corpus" "$seeds" >"$work/log" 2>&1
rc=$?
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$')
if [ $rc -ne 0 ]; then
    tail -n 60 "$work/log"
    keep=${AST_BUILD_ROOT:-.}/fuzz-artifacts
    mkdir -p "$keep" && cp "$work"/art/* "$keep"/ 2>/dev/null
    echo "FAIL $name: exit $rc after ${runs:-?} runs; inputs kept in $keep: $(ls "$work/art" | tr '\n' ' ')"
    exit 1
fi
echo "ok   $name: ${runs:-?} runs in ${secs} s from $(ls "$seeds" | wc -l) seeds, $(ls "$work/corpus" | wc -l) new corpus inputs, no crash"
