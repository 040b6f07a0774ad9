# search_lib.sh — sourced by the astraea-search CLI tests (needs $S, the astraea-search binary).

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

# kill9_after MS PID: SIGKILL to PID after MS milliseconds; 0 if the kill ended it (exit 137),
# 1 if it had already finished
kill9_after() {
    sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"
    kill -9 "$2" 2>/dev/null
    wait "$2" 2>/dev/null
    [ $? -eq 137 ]
}
