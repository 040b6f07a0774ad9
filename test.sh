#!/usr/bin/env bash
# test.sh — build (through setup.sh) and run every test suite: cpu, gpu (skipped without a CUDA
# device, with the reason), slow, fuzz (fuzz_smoke: each libFuzzer target briefly); then, on a
# full run, the cpu suite again under ASan+UBSan (build-san, tests/fuzz/sanitize_build.sh), its
# results counted with the rest. The last line is "N passed, N failed, N skipped".
#   ./test.sh                 all suites, then the cpu suite under the sanitizers
#   ./test.sh --suite cpu     extra arguments go to 'meson test' (no sanitizer pass)
#   AST_SAN_PASS=1|0          force or skip the sanitizer pass; AST_SAN_BUILD=DIR its build
set -uo pipefail
cd "$(dirname "$0")"
build=${BUILD_DIR:-build}
./setup.sh >/tmp/astraea-setup.log 2>&1 || { cat /tmp/astraea-setup.log; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
export AST_SAN_BUILD=${AST_SAN_BUILD:-$PWD/build-san} # fuzz_smoke builds it too
meson test -C "$build" --print-errorlogs --num-processes "${TEST_JOBS:-2}" "$@"
logs=("$build/meson-logs/testlog.json")
reports=""
if [ "${AST_SAN_PASS:-$([ $# -eq 0 ] && echo 1 || echo 0)}" = 1 ]; then
    san=$AST_SAN_BUILD
    reports=$san/sanitizer-reports # every ASan/UBSan report of any process, tools included
    if bash tests/fuzz/sanitize_build.sh "$san" >/tmp/astraea-sanitize-$$.log 2>&1; then
        rm -rf "$reports" && mkdir -p "$reports"
        ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:log_path=$reports/asan" \
        UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$reports/ubsan" \
            meson test -C "$san" --suite cpu --print-errorlogs --num-processes "${TEST_JOBS:-2}" \
            --timeout-multiplier 3 --logbase sanitize # sanitized code runs 2-10x slower
        logs+=("$san/meson-logs/sanitize.json")
    else
        cat /tmp/astraea-sanitize-$$.log
        mkdir -p "$reports" && echo "the sanitizer build failed" >"$reports/build-failed"
    fi
    rm -f /tmp/astraea-sanitize-$$.log
fi
python3 - "$reports" "${logs[@]}" <<'PY'
import json, os, sys
p = f = s = 0
skipped, failed = [], []
for k, path in enumerate(sys.argv[2:]):
    tag = "sanitize:" if k else ""
    for line in open(path):
        r = json.loads(line)
        res = r.get("result")
        if res in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif res == "SKIP":
            s += 1
            reason = [l for l in (r.get("stdout") or "").splitlines() if "SKIP" in l]
            skipped.append(f"  skipped {tag}{r['name']}: {reason[-1] if reason else ''}")
        else:
            f += 1
            failed.append(f"  failed {tag}{r['name']}: {res}")
rep = sys.argv[1]
notes = []
for name in sorted(os.listdir(rep)) if rep and os.path.isdir(rep) else []:
    text = open(os.path.join(rep, name), errors="replace").read()
    # a report from any process (a tool inside a script test too) is a failure; a file with
    # only sanitizer WARNING lines is not a report (e.g. "Can't read from symbolizer": a test
    # killed a process group while a rank's exit-time leak check was symbolizing)
    if any(k in text for k in ("ERROR:", "runtime error", "SUMMARY:")) or "build-failed" in name:
        f += 1
        failed.append(f"  failed sanitizer report {name}:\n" + "\n".join(text.splitlines()[:40]))
    else:
        notes.append(f"  sanitizer warning (not an error) {name}: " + " / ".join(text.splitlines()[:3]))
print("\n".join(skipped + notes + failed))
print(f"{p} passed, {f} failed, {s} skipped")
sys.exit(1 if f else 0)
PY
