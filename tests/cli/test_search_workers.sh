#!/usr/bin/env bash
# test_search_workers.sh — astraea-search's evaluation workers (docs/search.md "Workers"): a run's
# result must not depend on --workers. --workers 1 and --workers 3 must store the same candidates
# (ids, genomes, parents, every metric to the last bit, reuses) and the same best; a run with 3
# workers killed with SIGKILL mid-run and resumed by the same command must end with exactly the
# uninterrupted run's candidates; --max-evals and Ctrl-C stop a 3-worker run at a clean point.
#
# Models: the synthetic stand-in (with a small GA space so that children repeat genomes and the
# reuse path runs), and the real CPU engine on wan-mini at a tiny size (in a sanitizer build, or
# without the wan-mini weights, the tiny fixture checkpoint with context-file prompts). The
# latency model is pinned so the runs share one repair band.
set -u
B=${1:?build dir}
. "$(dirname "$0")/search_lib.sh" # S, D, T, ok/bad; engine_model, evals_of, evals_while, kill_mid_run, now_ms, wait_evals

# same_case NAME ARGS...: --workers 1 vs --workers 3; leaves $T/NAME-1.db (the reference) and
# the 3-worker run's duration in $ms3.
same_case() {
    local name=$1; shift
    local t0
    if ! $S "$@" --db "$T/$name-1.db" --workers 1 --quiet >"$T/log" 2>&1; then
        bad "$name: --workers 1 failed: $(tail -3 "$T/log")"; return 1
    fi
    t0=$(now_ms)
    if ! $S "$@" --db "$T/$name-3.db" --workers 3 --quiet >"$T/log" 2>&1; then
        bad "$name: --workers 3 failed: $(tail -3 "$T/log")"; return 1
    fi
    ms3=$(( $(now_ms) - t0 ))
    $D "$T/$name-1.db" >"$T/$name-1.txt" 2>&1; $D "$T/$name-3.db" >"$T/$name-3.txt" 2>&1
    local n
    n=$(( $(wc -l <"$T/$name-1.txt") - 1 ))
    if [ "$n" -gt 0 ] && cmp -s "$T/$name-1.txt" "$T/$name-3.txt"; then
        ok "$name: --workers 1 and 3 store the same $n candidates and best ($(head -1 "$T/$name-1.txt"); reused: $(awk 'NR>1 && $NF != 0' "$T/$name-1.txt" | wc -l))"
    else
        bad "$name: --workers 1 vs 3 differ:\n$(diff "$T/$name-1.txt" "$T/$name-3.txt" | head -6)"
    fi
}

# kill_mid_evals NAME ARGS...: (the real engine) one SIGKILL of a 3-worker run while it still
# has evaluations to do, into $T/NAME-k.db: once half the reference's evaluations are committed
# (read from the DB), after a random 0-100 ms. It counts only if it ended the process (exit 137)
# with fewer evaluations stored than the reference has (a kill in the run's last part, after its
# evaluations, tests nothing); on a machine fast enough to get past them first (a DB poll takes
# ~150 ms, the evaluations ~0.9 s on 2 cores), the killed run starts over and is killed at a
# quarter, an eighth, then at the first sight of the run. Sets landed (0/1), killed_at, tries;
# 1 (and reported) if the run failed on its own.
kill_mid_evals() {
    local name=$1; shift
    local total div pid at
    landed=0 tries=0 killed_at=""
    total=$(evals_of "$T/$name-1.db")
    if [ -z "$total" ] || [ "$total" -lt 2 ]; then
        bad "$name: the uninterrupted run stored '${total}' evaluations"; return 1
    fi
    for div in 2 4 8 0; do
        tries=$((tries + 1))
        rm -f "$T/$name-k.db" "$T/$name-k.db-wal" "$T/$name-k.db-shm"
        $S "$@" --db "$T/$name-k.db" --workers 3 --quiet >"$T/log" 2>&1 &
        pid=$!
        evals_while $pid "$T/$name-k.db" $(( div ? total / div : 0 ))
        at=$(( div == 2 ? RANDOM % 100 : 0 ))
        kill_mid_run $at $pid "$T/$name-k.db" "$total"
        case $? in
        0) landed=1 killed_at="$kill_evals of $total"; return 0;;
        2) bad "$name: the 3-worker run failed before the kill (exit $kill_rc): $(tail -3 "$T/log")"
           return 1;;
        esac
    done
    return 0
}

# kill_case NAME KILLS ARGS...: with 3 workers, SIGKILL mid-run, then the same command to the
# end: equal to NAME-1.db. KILL_BY=evals (the real engine): one kill, kill_mid_evals. Else (the
# synthetic stand-in) up to KILLS kills of the same database, each once the run has committed
# one evaluation more than the last kill left (it is evaluating: a kill by the clock alone could
# land in the latency calibration of a loaded machine every time), after a random 0-100 ms; a
# kill that finds the run past its evaluations ends the series. None landed (the evaluations
# all done between a DB poll and the kill): up to three more tries, each on a fresh database.
kill_case() {
    local name=$1 kills=$2; shift 2
    local landed=0 i pid rc how total have try
    if [ "${KILL_BY:-time}" = evals ]; then
        kill_mid_evals "$name" "$@" || return
        how="at $killed_at evaluations (try $tries)"
    else
        total=$(evals_of "$T/$name-1.db")
        for try in 1 2 3 4; do
            [ $try -gt 1 ] && rm -f "$T/$name-k.db" "$T/$name-k.db-wal" "$T/$name-k.db-shm"
            have=0
            for i in $(seq "$kills"); do
                $S "$@" --db "$T/$name-k.db" --workers 3 --quiet >"$T/log" 2>&1 &
                pid=$!
                evals_while $pid "$T/$name-k.db" $((have + 1))
                kill_mid_run $((RANDOM % 100)) $pid "$T/$name-k.db" "${total:-0}"
                case $? in
                0) landed=$((landed+1)) have=$kill_evals;;
                2) bad "$name: the 3-worker run failed before the kill (exit $kill_rc): $(tail -3 "$T/log")"
                   return;;
                *) break;;
                esac
            done
            [ $landed -gt 0 ] && break
        done
        how="$landed times (try $try)"
    fi
    $S "$@" --db "$T/$name-k.db" --workers 3 --quiet >"$T/log" 2>&1; rc=$?
    if [ $rc -ne 0 ]; then bad "$name: resumed 3-worker run exit $rc: $(tail -3 "$T/log")"; return; fi
    if [ $landed -lt 1 ]; then bad "$name: no kill landed mid-run (3-worker run: $ms3 ms)"; return; fi
    $D "$T/$name-k.db" >"$T/$name-k.txt" 2>&1
    if cmp -s "$T/$name-1.txt" "$T/$name-k.txt"; then
        ok "$name: 3 workers killed with SIGKILL $how (run: $ms3 ms), resumed: same candidates and best as uninterrupted"
    else
        bad "$name: after kill -9 + resume:\n$(diff "$T/$name-1.txt" "$T/$name-k.txt" | head -6)"
    fi
}

# ---- the synthetic stand-in: 4 steps x 3 levels, so the GA runs out of new genomes (reuses)
SYN="--model synthetic --synthetic-ms 15 --target-speedup 1.5x --steps 4 --levels 3 --band-low 0.5 --band-high 1.5 --population 8 --parents 3 --elites 1 --children 6 --generations 4 --seed 3 --measure-repeats 1"
if same_case synthetic $SYN; then
    [ "$(awk 'NR>1 && $NF != 0' "$T/synthetic-1.txt" | wc -l)" -gt 0 ] \
        && ok "synthetic: the reuse path ran" || bad "synthetic: no candidate reused a genome (the case lost its point)"
    kill_case synthetic 4 $SYN

    # --max-evals 5 with 3 workers: exactly 5 evaluations, then the same command finishes it
    $S $SYN --db "$T/max.db" --workers 3 --max-evals 5 >"$T/log" 2>&1; rc=$?
    if [ $rc -eq 0 ] && grep -q "stopped after 5 evaluations" "$T/log" \
        && $D "$T/max.db" | head -1 | grep -q "evaluations 5 " \
        && $S $SYN --db "$T/max.db" --workers 3 --quiet >"$T/log" 2>&1 \
        && $D "$T/max.db" >"$T/max.txt" 2>&1 && cmp -s "$T/synthetic-1.txt" "$T/max.txt"; then
        ok "--max-evals 5 with 3 workers: 5 evaluations, then resumed to the uninterrupted result"
    else
        bad "--max-evals with 3 workers: exit $rc: $(tail -2 "$T/log"); $($D "$T/max.db" | head -1)"
    fi

    # Ctrl-C with 3 workers: the evaluations in flight finish and are stored, exit 130
    $S $SYN --synthetic-ms 150 --db "$T/int.db" --workers 3 --quiet >"$T/log" 2>&1 &
    pid=$!
    wait_evals "$T/int.db" 1 # references 0.6 s, then 15 evaluations of 0.6 s on 3 workers
    kill -INT $pid; wait $pid; rc=$?
    if [ $rc -eq 130 ] && $S --db "$T/int.db" --list | grep -q interrupted \
        && $S $SYN --db "$T/int.db" --workers 2 --quiet >"$T/log" 2>&1 \
        && $D "$T/int.db" >"$T/int.txt" 2>&1 && cmp -s "$T/synthetic-1.txt" "$T/int.txt"; then
        ok "Ctrl-C with 3 workers: exit 130, resumed with 2 workers to the uninterrupted result"
    else
        bad "Ctrl-C with 3 workers: exit $rc: $(tail -2 "$T/log")"
    fi
fi

# ---- the real CPU engine
engine_model "--backend cpu --target-speedup 2x --frames 4 --height 32 --width 32 --steps 6 --guidance 1 --n-prompts 1 --latency-model 0.001,0.02 --population 6 --parents 3 --elites 1 --children 4 --generations 3 --seed 3 --measure-repeats 1" \
    "--frames 9 --height 64 --width 96 --steps 6 --guidance 1 --backend cpu --target-speedup 1.5x --latency-model 0.0008,0.001 --population 6 --parents 3 --elites 1 --children 4 --generations 2 --seed 3 --measure-repeats 1"
same_case "$ENG_NAME" "${ENG[@]}" && KILL_BY=evals kill_case "$ENG_NAME" 1 "${ENG[@]}"

checks_passed
