# search_lib.sh — the common setup and helpers of the astraea-search CLI tests
# (test_search_resume.sh, test_search_workers.sh, test_search_mpi.sh), sourced after `set -u` and
# B=<build dir>. Sets FX (the tiny fixture checkpoint's folder), MODELS (the installed models), S
# (astraea-search), D (search_dump), T (a scratch folder removed on exit) and the check counters
# that ok, bad and checks_passed keep and report.
# shellcheck shell=bash disable=SC2034 # (the variables are the sourcing test's)
FX=${AST_FIXTURES:-tests/fixtures}/tiny
MODELS=${ASTRAEA_MODELS:-models}
S=$B/astraea-search
D=$B/tests/search_dump
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; checks=0
ok()  { checks=$((checks+1)); echo "ok   $1"; }
bad() { checks=$((checks+1)); fails=$((fails+1)); echo "FAIL $1"; }
# checks_passed: prints the tally; the test's exit status (0 when no check failed)
checks_passed() { echo "$((checks - fails)) of $checks checks passed"; [ $fails -eq 0 ]; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# engine_model "WAN_MINI_ARGS" "TINY_ARGS": the model of a test's real-CPU-engine case. wan-mini
# when its weights are installed in $MODELS and this is no sanitizer build (AST_SANITIZE=none;
# under a sanitizer wan-mini's CPU forwards take minutes, and the engine is checked by
# test_engine/test_golden), else the tiny fixture checkpoint, whose prompts are its two context
# files (written to $T/prompts.txt). Sets ENG_NAME (wan-mini or tiny-engine) and the array ENG:
# --model (and --prompts), then the chosen ARGS (the test's own sizes, speedup, latency model and
# GA), split on blanks.
engine_model() {
    local -a args
    if [ "${AST_SANITIZE:-none}" = none ] && ls "$MODELS"/wan-mini/*.safetensors >/dev/null 2>&1; then
        read -r -a args <<<"$1"
        ENG_NAME=wan-mini
        ENG=(--model wan-mini "${args[@]}")
    else
        echo "note: sanitizer build (${AST_SANITIZE:-none}) or wan-mini weights not installed in $MODELS/wan-mini: using the tiny fixture checkpoint"
        printf '%s\n' "$(cd "$FX" && pwd)/sample_in.safetensors" "$(cd "$FX" && pwd)/forward_in.safetensors" >"$T/prompts.txt"
        read -r -a args <<<"$2"
        ENG_NAME=tiny-engine
        ENG=(--model "$FX/orig_f32" --prompts "$T/prompts.txt" "${args[@]}")
    fi
}

# evals_of DB: committed evaluations of run 1 ("" while the DB does not exist yet)
evals_of() { [ -f "$1" ] && $S --db "$1" --list 2>/dev/null | awk 'NR==2 {print $9}'; }

# has_evals DB N: run 1 in DB has at least N committed evaluations
has_evals() { local n; n=$(evals_of "$1"); [ -n "$n" ] && [ "$n" -ge "$2" ]; }

# wait_evals DB N: waits (up to 120 s) until run 1 in DB has N committed evaluations, so a
# signal lands mid-search however slow this machine (or a sanitizer build) is
wait_evals() {
    local i
    for i in $(seq 1200); do has_evals "$1" "$2" && return 0; sleep 0.1; done
    return 1
}

# evals_while PID DB N: waits while PID runs until run 1 in DB has N committed evaluations;
# 0 once it has, 1 if PID ended first (the kill loops: a signal lands after k/5 of the work)
evals_while() {
    while kill -0 "$1" 2>/dev/null; do has_evals "$2" "$3" && return 0; sleep 0.05; done
    return 1
}

# kill_mid_run MS PID DB TOTAL: SIGKILL to PID after MS milliseconds, then whether the kill
# landed mid-run: 0 if it ended the run (exit 137) with fewer than TOTAL evaluations in DB (a
# kill after the last evaluation tests nothing), 1 if not (the run ended, or got past its
# evaluations, first), 2 if the run failed on its own. kill_rc: the run's exit status (137:
# killed, 0: it finished first); kill_evals: the evaluations in DB.
kill_mid_run() {
    sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"
    kill -9 "$2" 2>/dev/null
    wait "$2" 2>/dev/null
    kill_rc=$?
    kill_evals=$(evals_of "$3")
    if [ $kill_rc -ne 0 ] && [ $kill_rc -ne 137 ]; then return 2; fi
    [ $kill_rc -eq 137 ] && [ -n "$kill_evals" ] && [ "$kill_evals" -lt "$4" ]
}
