#!/usr/bin/env bash
# test_search_mpi.sh — astraea-search's evaluation workers as MPI ranks (docs/search.md "MPI"):
# `mpirun -np 3 astraea-search ...` (rank 0 owns the GA and the DB, ranks 1 and 2 evaluate) must
# store exactly the candidates and best of the single-process run; SIGKILL of rank 0 mid-run
# leaves a DB that the same command resumes to that result; when rank 0 fails, every rank ends
# (no hang) and the error is rank 0's.
#
# Models: the synthetic stand-in (a GA space small enough for reuses), and the CPU engine on
# wan-mini at a tiny size (in a sanitizer build, or without the wan-mini weights, the tiny fixture
# checkpoint with context-file prompts). Skips (77) when the build has no MPI or mpirun is missing.
set -u
B=${1:?build dir}
. "$(dirname "$0")/search_lib.sh" # S, D, T, ok/bad; engine_model, now_ms, wait_evals

if ! grep -q '#define AST_HAVE_MPI 1' "$B/ast_config.h" 2>/dev/null; then
    echo "SKIP: this build has no MPI (meson setup -Dmpi=enabled with libopenmpi-dev installed)"
    exit 77
fi
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: mpirun is not installed (openmpi-bin)"
    exit 77
fi

# OpenMPI on one host in a container without a network: start the ranks directly (no ssh), talk
# over loopback and shared memory (no CMA single copy: it needs ptrace rights containers lack),
# the ob1 messaging layer (no InfiniBand probing), ranks free to use every core (no binding).
export OMPI_MCA_plm=isolated
export OMPI_MCA_btl=self,vader,tcp
export OMPI_MCA_btl_tcp_if_include=lo
export OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_pml=ob1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none
export OMPI_MCA_btl_base_warn_component_unused=0
if [ "${AST_SANITIZE:-none}" != none ]; then
    # LeakSanitizer: what OpenMPI allocates in MPI_Init and its progress threads and never frees
    # is its own; every other leak still counts
    printf 'leak:ast_search_mpi_init\nleak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libpmix.so\nleak:libevent\n' >"$T/lsan.supp"
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$T/lsan.supp:print_suppressions=0"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0" # whole stacks through OpenMPI's plugins
fi
MPIRUN=(timeout 240 mpirun --allow-run-as-root --oversubscribe --bind-to none -np 3)

# mpi_case NAME ARGS...: one process vs mpirun -np 3; leaves NAME-1.txt and the MPI run's time.
mpi_case() {
    local name=$1; shift
    local t0
    if ! $S "$@" --db "$T/$name-1.db" --quiet >"$T/log" 2>&1; then
        bad "$name: single-process run failed: $(tail -3 "$T/log")"; return 1
    fi
    t0=$(now_ms)
    if ! "${MPIRUN[@]}" "$S" "$@" --db "$T/$name-m.db" >"$T/mlog" 2>&1; then
        bad "$name: mpirun -np 3 failed: $(grep -v '^gen' "$T/mlog" | tail -5)"; return 1
    fi
    msmpi=$(( $(now_ms) - t0 ))
    $D "$T/$name-1.db" >"$T/$name-1.txt" 2>&1; $D "$T/$name-m.db" >"$T/$name-m.txt" 2>&1
    local n
    n=$(( $(wc -l <"$T/$name-1.txt") - 1 ))
    if ! grep -q "evaluating with 2 MPI worker ranks" "$T/mlog"; then
        bad "$name: the MPI run did not use its worker ranks: $(grep -v '^gen' "$T/mlog" | head -5)"
    elif [ "$n" -gt 0 ] && cmp -s "$T/$name-1.txt" "$T/$name-m.txt"; then
        ok "$name: mpirun -np 3 ($msmpi ms) stores the single process's $n candidates and best ($(head -1 "$T/$name-1.txt"); reused: $(awk 'NR>1 && $NF != 0' "$T/$name-1.txt" | wc -l))"
    else
        bad "$name: mpirun -np 3 vs one process:\n$(diff "$T/$name-1.txt" "$T/$name-m.txt" | head -6)"
    fi
}

# ---- the synthetic stand-in
SYN="--model synthetic --synthetic-ms 15 --target-speedup 1.5x --steps 4 --levels 3 --band-low 0.5 --band-high 1.5 --population 8 --parents 3 --elites 1 --children 6 --generations 4 --seed 3 --measure-repeats 1"
if mpi_case synthetic $SYN; then
    # SIGKILL of rank 0 mid-run (mpirun then ends the workers), twice; the same command resumes
    landed=0
    for target in 2 9; do # committed evaluations before the kill (the second run resumes)
        "${MPIRUN[@]}" "$S" $SYN --synthetic-ms 60 --db "$T/kill.db" --quiet >"$T/klog" 2>&1 &
        mp=$!
        wait_evals "$T/kill.db" $target
        r0=
        for c in $mp $(pgrep -P $mp); do # timeout -> mpirun -> ranks
            for p in $(pgrep -P "$c"); do
                tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=0 && r0=$p
            done
        done
        [ -n "$r0" ] && kill -9 "$r0" 2>/dev/null && landed=$((landed+1))
        wait $mp 2>/dev/null
    done
    sleep 0.3
    if [ $landed -lt 1 ]; then
        bad "kill -9 of rank 0: rank 0 not found under mpirun: $(tail -3 "$T/klog")"
    elif "${MPIRUN[@]}" "$S" $SYN --db "$T/kill.db" --quiet >"$T/klog" 2>&1 \
        && $D "$T/kill.db" >"$T/kill.txt" 2>&1 && cmp -s "$T/synthetic-1.txt" "$T/kill.txt"; then
        ok "kill -9 of rank 0 ($landed times), resumed under mpirun: the single process's candidates and best"
    else
        bad "kill -9 of rank 0 then resume: $(tail -3 "$T/klog"); $(diff "$T/synthetic-1.txt" "$T/kill.txt" | head -4)"
    fi


    # Ctrl-C of mpirun (SIGINT; it sends SIGTERM on to every rank): the workers ignore it, rank
    # 0 stops after the evaluations in flight, marks the run interrupted and releases them
    "${MPIRUN[@]}" "$S" $SYN --synthetic-ms 60 --db "$T/int.db" >"$T/ilog" 2>&1 &
    mp=$!
    wait_evals "$T/int.db" 2
    for c in $mp $(pgrep -P $mp); do [ "$(cat /proc/$c/comm 2>/dev/null)" = mpirun ] && kill -INT $c; done
    wait $mp
    if grep -q "stopped after .* evaluations this session" "$T/ilog" \
        && $S --db "$T/int.db" --list | grep -q interrupted \
        && "${MPIRUN[@]}" "$S" $SYN --db "$T/int.db" --quiet >"$T/ilog" 2>&1 \
        && $D "$T/int.db" >"$T/int.txt" 2>&1 && cmp -s "$T/synthetic-1.txt" "$T/int.txt"; then
        ok "Ctrl-C of mpirun: rank 0 stopped cleanly (run interrupted), resumed to the single process's result"
    else
        bad "Ctrl-C of mpirun: $(grep -v '^gen' "$T/ilog" | tail -4)"
    fi
fi

# rank 0 fails (a DB that is not SQLite): every rank ends, the message is rank 0's
echo "not a database" >"$T/bad.db"
t0=$(now_ms)
"${MPIRUN[@]}" "$S" $SYN --db "$T/bad.db" >"$T/log" 2>&1; rc=$?
ms=$(( $(now_ms) - t0 ))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "astraea-search: error: .*not.*SQLite\|astraea-search: error: .*not a database" "$T/log" \
    && [ "$(grep -c 'astraea-search: error' "$T/log")" -eq 1 ]; then
    ok "rank 0 fails: every rank ends ($ms ms, exit $rc), one message: $(grep 'astraea-search: error' "$T/log" | head -c 140)"
else
    bad "rank 0 failing: exit $rc after $ms ms: $(head -c 400 "$T/log")"
fi
"${MPIRUN[@]}" "$S" $SYN --db "$T/w.db" --workers 2 >"$T/log" 2>&1; rc=$?
if [ $rc -eq 2 ] && grep -q "every rank but rank 0 is one worker" "$T/log"; then
    ok "--workers under mpirun is a usage error"
else bad "--workers under mpirun: exit $rc: $(head -c 300 "$T/log")"; fi

# ---- the real CPU engine
engine_model "--backend cpu --target-speedup 2x --frames 4 --height 16 --width 16 --steps 6 --guidance 1 --n-prompts 1 --latency-model 0.001,0.02 --population 6 --parents 3 --elites 1 --children 4 --generations 3 --seed 3 --measure-repeats 1" \
    "--frames 9 --height 64 --width 96 --steps 6 --guidance 1 --backend cpu --target-speedup 1.5x --latency-model 0.0008,0.001 --population 6 --parents 3 --elites 1 --children 4 --generations 2 --seed 3 --measure-repeats 1"
mpi_case "$ENG_NAME" "${ENG[@]}"

checks_passed
