#!/usr/bin/env bash
# test_search_resume.sh — astraea-search end to end: a search killed with SIGKILL at random
# moments, again and again, then resumed by re-running the same command, must end with the same
# best genome and fitness as an uninterrupted run with the same seed. Also: Ctrl-C stops cleanly
# (exit 130) and the run resumes; a second process on a busy run is refused; export and --list.
#
# Models: the real CPU engine on wan-mini when its weights are installed, else on the tiny
# fixture checkpoint (random weights, context files); and the synthetic stand-in. The latency
# model is pinned (--latency-model) so the two runs share one repair band: a calibration is a
# measurement, and two measurements differ.
set -u
B=${1:?build dir}
. "$(dirname "$0")/search_lib.sh" # S, T, ok/bad; engine_model, evals_of, evals_while, kill_mid_run, now_ms, wait_evals
E=$B/astraea-export

# The fields of an exported best profile that must match between two runs of one search.
best_of() { # DB -> prints budgets and fitness of the run's best
    $E --db "$1" --out "$T/best.json" >/dev/null 2>&1 || { echo "export failed"; return; }
    grep -E '"(budgets|mse|psnr|ssim|predicted_speedup)"' "$T/best.json"
}


# resume_case NAME ARGS...: uninterrupted vs killed with SIGKILL 5 times, then resumed to the end
# by the same command. Where to kill: with KILL_BY=evals (the real engine, ~1 s per evaluation),
# the k-th kill (k = 0..4) waits until k/5 of the uninterrupted run's evaluations are committed
# (read from the DB, as a user's --list would), then a random 0-400 ms more, so the kills land
# during model load and dense references, then at moments spread over the search, whatever this
# machine's speed; otherwise (the synthetic stand-in, 30 ms per run step) at random moments within
# the first 25% of the uninterrupted run's duration.
resume_case() {
    local name=$1; shift
    local t0 ms
    t0=$(now_ms)
    if ! $S "$@" --db "$T/$name-a.db" --quiet >"$T/log" 2>&1; then
        bad "$name: uninterrupted search failed: $(tail -3 "$T/log")"; return
    fi
    ms=$(( $(now_ms) - t0 ))
    local total; total=$(evals_of "$T/$name-a.db")
    local kills=0 rc i at need=2 target
    [ "${KILL_BY:-time}" = evals ] && need=4
    for i in 0 1 2 3 4; do
        $S "$@" --db "$T/$name-b.db" --quiet >"$T/log" 2>&1 &
        local pid=$!
        if [ "${KILL_BY:-time}" = evals ]; then
            target=$(( total * i / 5 ))
            evals_while $pid "$T/$name-b.db" "$target"
            at=$(( RANDOM % 400 ))
        else
            at=$(( ms / 20 + RANDOM % (ms / 5 + 1) )) # early: five sessions share one run
        fi
        kill_mid_run $at $pid "$T/$name-b.db" "${total:-0}"
        case $? in
        0) kills=$((kills+1));;
        2) bad "$name: the search failed before the kill (exit $kill_rc): $(tail -3 "$T/log")"
           return;;
        esac
    done
    $S "$@" --db "$T/$name-b.db" --quiet >"$T/log" 2>&1; rc=$?
    if [ $rc -ne 0 ]; then bad "$name: resumed search exit $rc: $(tail -3 "$T/log")"; return; fi
    if [ $kills -lt $need ]; then bad "$name: only $kills of 5 kills landed mid-run (run took $ms ms, $total evaluations)"; return; fi
    local a b
    a=$(best_of "$T/$name-a.db"); b=$(best_of "$T/$name-b.db")
    if [ -n "$a" ] && [ "$a" = "$b" ]; then
        ok "$name: killed $kills times with SIGKILL (run: $ms ms), resumed: same best as uninterrupted ($(echo "$a" | tr -d '\t\n ' | head -c 120))"
    else
        bad "$name: best differs after kill -9 + resume:\n$a\nvs\n$b"
    fi
    # the evaluation count is the same too (no evaluation lost or doubled)
    local ea eb
    ea=$total; eb=$(evals_of "$T/$name-b.db")
    if [ -n "$ea" ] && [ "$ea" = "$eb" ]; then ok "$name: $ea evaluations in both"; else bad "$name: evaluations $ea vs $eb"; fi
}

GA="--population 8 --parents 3 --elites 1 --children 6 --generations 4 --seed 3 --measure-repeats 1"

# ---- the real CPU engine (wan-mini, or the tiny checkpoint in a sanitizer build or without the
# wan-mini weights: engine_model). wan-mini small: 6 steps, no CFG, one prompt, 18 evaluations
# (~100 forwards of wan-mini); tiny: 6 steps, 18 evaluations x 2 prompts (~220 forwards of a
# 72-token model).
engine_model "--backend cpu --target-speedup 2x --steps 6 --guidance 1 --n-prompts 1 --latency-model 0.001,0.02 --population 6 --parents 3 --elites 1 --children 4 --generations 3 --seed 3 --measure-repeats 1" \
    "--frames 9 --height 64 --width 96 --steps 6 --guidance 1 --backend cpu --target-speedup 1.5x --latency-model 0.0008,0.001 --population 6 --parents 3 --elites 1 --children 4 --generations 3 --seed 3 --measure-repeats 1"
KILL_BY=evals resume_case "$ENG_NAME" "${ENG[@]}"

# ---- the synthetic stand-in (each generation sleeps 3 ms so kills land mid-run)
resume_case synthetic --model synthetic --synthetic-ms 3 --target-speedup 2x --steps 16 $GA

# ---- Ctrl-C: clean stop with exit 130, state kept; a second process is refused meanwhile
SYN="--model synthetic --synthetic-ms 40 --target-speedup 2x --steps 16 $GA --db $T/int.db"
$S $SYN --quiet >"$T/int.log" 2>&1 &
pid=$!
wait_evals "$T/int.db" 1
$S $SYN >"$T/second.log" 2>&1; rc=$?
if [ $rc -eq 1 ] && grep -q "being searched by another process" "$T/second.log"; then
    ok "second process on a busy run refused: $(head -c 150 "$T/second.log")"
else bad "second process: exit $rc: $(head -c 300 "$T/second.log")"; fi
kill -INT $pid; wait $pid; rc=$?
if [ $rc -eq 130 ] && $S --db "$T/int.db" --list | grep -q interrupted; then
    ok "Ctrl-C: exit 130, run marked interrupted"
else bad "Ctrl-C: exit $rc, list: $($S --db "$T/int.db" --list | tail -1)"; fi
if $S $SYN --synthetic-ms 0 --quiet >"$T/log" 2>&1 && $S --db "$T/int.db" --list | grep -q done; then
    ok "interrupted run resumed to done by the same command"
else bad "resume after Ctrl-C: $(tail -3 "$T/log")"; fi

# ---- --max-evals pauses a run; --resume RUN finishes it with the stored parameters
$S --model synthetic --target-speedup 1.7x --steps 10 $GA --db "$T/res.db" --max-evals 5 >"$T/log" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "stopped after 5 evaluations" "$T/log" \
    && $S --resume 1 --db "$T/res.db" --quiet >"$T/log2" 2>&1 && $S --db "$T/res.db" --list | grep -q done; then
    ok "--max-evals 5 then --resume 1"
else bad "--max-evals/--resume: exit $rc: $(tail -2 "$T/log") $(tail -2 "$T/log2" 2>/dev/null)"; fi
$S --resume 1 --target-speedup 3x --db "$T/res.db" >"$T/log" 2>&1; rc=$?
[ $rc -eq 2 ] && ok "--resume with --target-speedup is a usage error" || bad "--resume + --target-speedup: exit $rc"

# ---- export: profile, front pick, plot; a speed the front does not reach is a clear error
if $E --db "$T/int.db" --out "$T/p.json" >/dev/null 2>&1 && grep -q '"measured_speedup"' "$T/p.json" \
    && grep -q '"format_version":.*1' "$T/p.json"; then ok "export of the run's best"; else bad "export: $(cat "$T/p.json" 2>&1 | head -5)"; fi
if $E --db "$T/int.db" --speedup 1.9 --out "$T/p19.json" >/dev/null 2>&1; then ok "export --speedup 1.9"; else bad "export --speedup 1.9"; fi
$E --db "$T/int.db" --speedup 40 --out "$T/p40.json" >"$T/log" 2>&1; rc=$?
if [ $rc -eq 1 ] && grep -q "reaches at most" "$T/log" && [ ! -e "$T/p40.json" ]; then ok "export --speedup 40 refused"; else bad "export --speedup 40: exit $rc"; fi
if command -v gnuplot >/dev/null; then
    if $E --db "$T/int.db" --out "$T/p.json" --plot "$T/front.png" >/dev/null 2>&1 && [ -s "$T/front.png" ]; then ok "plot"; else bad "plot"; fi
else
    PATH=/nonexistent $E --db "$T/int.db" --out "$T/p.json" --plot "$T/front.png" >"$T/log" 2>&1
    if grep -q "gnuplot is not installed" "$T/log"; then ok "plot without gnuplot: clear error"; else bad "plot without gnuplot"; fi
fi
if $S --model synthetic --validate "$T/p.json" --validate-json "$T/v.json" >"$T/log" 2>&1 \
    && grep -q "profile beats uniform" "$T/log" && grep -q '"uniform_psnr"' "$T/v.json"; then
    ok "--validate: $(tail -1 "$T/log" | head -c 120)"
else bad "--validate: $(tail -3 "$T/log")"; fi
$S --self-test >"$T/log" 2>&1 && grep -q "caught: 6/6" "$T/log" && ok "--self-test" || bad "--self-test: $(cat "$T/log")"
$S --target-speedup 2x --model synthetic --db "$T/dry.db" --dry-run >"$T/log" 2>&1 && [ ! -e "$T/dry.db" ] \
    && ok "--dry-run writes nothing: $(tail -1 "$T/log")" || bad "--dry-run: $(cat "$T/log")"

checks_passed
