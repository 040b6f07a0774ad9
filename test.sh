#!/usr/bin/env bash
# test.sh — build (through setup.sh) and run every test suite: cpu, gpu (skipped without a CUDA
# device, with the reason), slow, fuzz. The last line is "N passed, N failed, N skipped".
#   ./test.sh                 all suites
#   ./test.sh --suite cpu     extra arguments go to 'meson test'
set -uo pipefail
cd "$(dirname "$0")"
build=${BUILD_DIR:-build}
./setup.sh >/tmp/astraea-setup.log 2>&1 || { cat /tmp/astraea-setup.log; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
meson test -C "$build" --print-errorlogs --num-processes "${TEST_JOBS:-2}" "$@"
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = s = 0
skipped = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    res = r.get("result")
    if res in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif res == "SKIP":
        s += 1
        reason = [l for l in (r.get("stdout") or "").splitlines() if "SKIP" in l]
        skipped.append(f"  skipped {r['name']}: {reason[-1] if reason else ''}")
    else:
        f += 1
print("\n".join(skipped))
print(f"{p} passed, {f} failed, {s} skipped")
sys.exit(1 if f else 0)
PY
