#!/usr/bin/env bash
# bench/device.sh — everything one GPU-machine call does, in phases, so a call is one command:
#   bash bench/device.sh build test bench        (phases run in the order given)
# Phases:
#   build     configure + build with CUDA into build-gpu (needs .devdeps carried: devdeps.sh)
#   test      every test suite (the gpu suite runs instead of skipping)
#   sanitize  the GPU tests under compute-sanitizer (memcheck; API error returns are checked by
#             our own code, and NCCL probes return some on purpose: not reported)
#   train     wan-mini training in the background (TRAIN_MINUTES, default 6) -> $OUT/wan-mini
#   bench     PyTorch peer + astraea-bench -> $OUT/dense_forward.json, $OUT/token_budget.json
#   multigpu  the scaling benchmark on every visible GPU: astraea-bench --multigpu-json for
#             P = 1, 2, 4, 8 (those that fit: MG_COUNTS overrides), dense and theta 0.4, at 14,040
#             and 32,760 tokens -> $OUT/multigpu.json; MG_APPEND=FILE adds to an earlier run's
#             file (carry it), as the 4- and 8-GPU runs do
#   mgphases  the same for one forward over MG_PHASE_GPUS (2) GPUs, per rank, exchanges apart
#   phases    where a forward's time goes (ASTRAEA_CUDA_PHASES=1, CUDA events, graphs off):
#             dense and theta 0.4 at 14,040 tokens -> $OUT/phases.log
#   twab      dense and theta 0.4 at 14,040 tokens under each of TWAB's switch settings
#             (default: GEMM tuning of 32 / 0 candidates)
#   gemmprof  every cuBLASLt product timed per shape, with the algorithm that ran
#             (ASTRAEA_GEMM_PROFILE=1): dense, theta 1 and 0.4 at 14,040 -> $OUT/gemmprof.log
#   wait      wait for the background training
#   trainbg   several wan-mini trainings (TRAIN_VARIANTS, one GPU each) that outlive the call
#   trainwait wait for them, evaluate each (evaluate.py), pack each -> $OUT/<name>.tgz
# Logs go to $OUT/*.log (they come back with the call).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
# the commit measured: pass ASTRAEA_COMMIT (the device copy may have no git history)
export ASTRAEA_COMMIT=${ASTRAEA_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
[ -f .devdeps/activate ] && source .devdeps/activate
B=build-gpu
# NCCL: the toolkit or system folders, else the PyTorch wheel's (nvidia.nccl), linked under
# /tmp/nccl (meson refuses an include folder inside the source tree)
nccl_opt=""
if ! ls /usr/local/cuda/include/nccl.h /usr/include/nccl.h >/dev/null 2>&1; then
    d=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null)
    if [ -n "$d" ] && [ -f "$d/include/nccl.h" ]; then
        mkdir -p /tmp/nccl/lib && ln -sfn "$d/include" /tmp/nccl/include
        ln -sf "$(ls "$d"/lib/libnccl.so* | head -1)" /tmp/nccl/lib/libnccl.so
        nccl_opt="-Dnccl_root=/tmp/nccl"
        export LD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
train_pid=""
broken=""   # set when setup/build failed: the phases that need the build are skipped
for phase in "$@"; do
    echo "=== $phase ($(date +%T))"
    case $phase in test|testgpu|sanitize|bench|attn|multigpu|mgphases|phases|gemmprof|twab) [ -n "$broken" ] && { echo "skipped: no build"; continue; };; esac
    case $phase in
    setup)
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
        [ -f $B/build.ninja ] || meson setup $B -Dcuda=enabled $nccl_opt --buildtype=release >"$OUT/setup.log" 2>&1 \
            || { tail -40 "$OUT/setup.log"; broken=1; }
        grep -E "CUDA backend|NCCL" "$OUT/setup.log" 2>/dev/null;;
    build)
        [ -n "$broken" ] && continue
        ninja -C $B >"$OUT/build.log" 2>&1 || { grep -E "error|Error" -A3 "$OUT/build.log" | head -60; broken=1; continue; }
        echo "built";;
    test)
        meson test -C $B --print-errorlogs --num-processes 4 >"$OUT/test.log" 2>&1
        grep -E "^ *[0-9]+/[0-9]+ " "$OUT/test.log" | grep -vE " OK " | head -40
        grep -E "^(Ok|Fail|Skipped|Timeout):" "$OUT/test.log";;
    testgpu)
        meson test -C $B --suite gpu --print-errorlogs >"$OUT/testgpu.log" 2>&1
        grep -E "^ *[0-9]+/[0-9]+ " "$OUT/testgpu.log"
        grep -E "FAIL|rel L2|max abs|TFLOP" "$OUT/testgpu.log" | head -60;;
    sanitize)
        export AST_FIXTURES=$PWD/tests/fixtures
        for t in ${SANITIZE_TESTS:-test_gpu_forward test_gpu_ops}; do
            timeout ${SANITIZE_TIMEOUT:-150} compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $B/tests/$t \
                >"$OUT/sanitize-$t.log" 2>&1
            echo "compute-sanitizer memcheck $t: exit $? $(grep -E 'ERROR SUMMARY' "$OUT/sanitize-$t.log")"
        done;;
    train)
        (PYTHONUNBUFFERED=1 python3 models/wan-mini/train/train.py --minutes "${TRAIN_MINUTES:-6}" \
            --out "$OUT/wan-mini" ${TRAIN_ARGS:-} >"$OUT/train.log" 2>&1) &
        train_pid=$!
        echo "training in the background (pid $train_pid)";;
    bench)
        # the PyTorch peer in the same call, on the same card: one JSON object per size
        { echo "["; sep=""
          for f in ${PEER_FRAMES:-9 21}; do
              r=$(python3 bench/pytorch_forward.py --frames $f --repeats 10 2>>"$OUT/peer.log") \
                  && { echo "$sep$r"; sep=","; }
          done; echo "]"; } >"$OUT/peer.json"
        cat "$OUT/peer.json"
        ./$B/astraea-bench --frames 33,81 --thetas 1,0.7,0.5,0.4,0.3,0.2 --peer "$OUT/peer.json" \
            --dense-json "$OUT/dense_forward.json" --budget-json "$OUT/token_budget.json" 2>&1 | tee "$OUT/bench.log";;
    phases)
        ASTRAEA_CUDA_PHASES=1 ./$B/astraea-bench --frames 33 --thetas 1,0.4 --no-attention \
            --repeats 3 >"$OUT/phases.log" 2>&1; grep -A4 "phase breakdown" "$OUT/phases.log";;
    twab)
        # A/B of switches on the token-wise forward, same process layout as bench: dense and
        # theta 0.4 at 14,040 tokens per variant (TWAB: space-separated variants, each
        # VAR=VALUE or several joined by commas)
        for v in default ${TWAB:-ASTRAEA_GEMM_TUNE=32 ASTRAEA_GEMM_TUNE=0}; do
            echo "== $v"
            [ "$v" = default ] && v=""
            for kv in ${v//,/ }; do
                case $kv in *=*) ;; *) echo "twab: '$kv' is not VAR=VALUE"; continue 2;; esac
            done
            env ${v//,/ } ./$B/astraea-bench --frames 33 --thetas 1,0.4 --no-attention \
                --repeats 10 2>&1 | grep -E "^tokens|^14040|error"
        done | tee "$OUT/twab.log";;
    gemmprof)
        # every cuBLASLt product timed, per shape (dense engine, then θ = 1 and 0.4 token-wise)
        ASTRAEA_GEMM_PROFILE=1 ./$B/astraea-bench --frames 33 --thetas 1,0.4 --no-attention \
            --repeats 3 >"$OUT/gemmprof.log" 2>&1; grep -A24 "GEMM profile" "$OUT/gemmprof.log";;
    multigpu)
        nv=$(nvidia-smi -L | wc -l)
        counts=${MG_COUNTS:-$(for p in 1 2 4 8; do [ $p -le $nv ] && printf '%s,' $p; done | sed 's/,$//')}
        nvidia-smi topo -m > "$OUT/topo.log" 2>&1
        app=""
        [ -n "${MG_APPEND:-}" ] && { cp "$MG_APPEND" "$OUT/multigpu.json"; app=--append; }
        ./$B/astraea-bench --multigpu-json "$OUT/multigpu.json" $app --gpu-counts "$counts" \
            --frames ${MG_FRAMES:-33,81} --mg-thetas 1,0.4 --repeats ${MG_REPEATS:-5} 2>&1 | tee "$OUT/multigpu.log";;
    mgphases)
        # the phase breakdown (with the exchanges) of one sharded forward, per rank
        ASTRAEA_CUDA_PHASES=1 ./$B/astraea-bench --multigpu-json /tmp/mgphases.json \
            --gpu-counts ${MG_PHASE_GPUS:-2} --frames ${MG_PHASE_FRAMES:-81} --mg-thetas 1,0.4 \
            --repeats 3 >"$OUT/mgphases.log" 2>&1
        grep -A4 "phase breakdown" "$OUT/mgphases.log" | head -40;;
    attn)
        ninja -C $B tests/test_gpu_attention >/dev/null
        for v in ${ATTN_VARIANTS:-wgmma_pp}; do
            timeout 120 ./$B/tests/test_gpu_attention --variant $v 2>&1 | tail -3
        done
        timeout 300 ./$B/tests/test_gpu_attention --bench 2>&1 | tee "$OUT/attn.log" | grep -E "TFLOP|^  (fa2|wgmma)";;
    trainbg)
        # TRAIN_VARIANTS="name:gpu:args|name:gpu:args": wan-mini trainings that outlive this call
        # (setsid; the next call on the warm machine waits for them with trainwait) in /tmp/wm
        mkdir -p /tmp/wm
        IFS='|' read -ra vs <<<"${TRAIN_VARIANTS:?TRAIN_VARIANTS}"
        for v in "${vs[@]}"; do
            name=${v%%:*}; rest=${v#*:}; gpu=${rest%%:*}; args=${rest#*:}
            echo "$gpu" >/tmp/wm/$name.gpu
            CUDA_VISIBLE_DEVICES=$gpu PYTHONUNBUFFERED=1 setsid nohup python3 models/wan-mini/train/train.py \
                --minutes "${TRAIN_MINUTES:-6}" --out /tmp/wm/$name --threads 4 $args \
                >/tmp/wm/$name.log 2>&1 </dev/null &
            echo "training $name on GPU $gpu: $args"
        done;;
    trainwait)
        # wait for the trainbg runs, evaluate each on its GPU, pack each as $OUT/<name>.tgz
        end=$((SECONDS + ${TRAIN_WAIT_MAX:-540}))
        while pgrep -f models/wan-mini/train/train.py >/dev/null && [ $SECONDS -lt $end ]; do sleep 5; done
        for f in /tmp/wm/*.gpu; do
            name=$(basename "$f" .gpu)
            tail -2 /tmp/wm/$name.log
            CUDA_VISIBLE_DEVICES=$(cat "$f") python3 models/wan-mini/train/evaluate.py --model /tmp/wm/$name \
                --out /tmp/wm/$name/eval --validate-n 50 >/tmp/wm/$name/eval.log 2>&1 &
        done
        wait
        for f in /tmp/wm/*.gpu; do
            name=$(basename "$f" .gpu)
            echo "$name: $(grep -E '^rendered' /tmp/wm/$name/eval.log || tail -3 /tmp/wm/$name/eval.log)"
            cp /tmp/wm/$name.log /tmp/wm/$name/train.log
            tar czf "$OUT/$name.tgz" -C /tmp/wm/$name --exclude checkpoint.pt --exclude optimizer.pt .
        done;;
    wait)
        [ -n "$train_pid" ] && wait $train_pid; tail -5 "$OUT/train.log";;
    tidy)  # at most 8 files come back: drop what is not needed
        rm -f "$OUT/wan-mini/checkpoint.pt" "$OUT/wan-mini/loss.gp" "$OUT/setup.log" "$OUT/peer.log"
        for f in "$OUT"/sanitize-*.log; do [ -f "$f" ] && grep -q "ERROR SUMMARY: 0 errors" "$f" && rm -f "$f"; done
        [ -s "$OUT/build.log" ] && grep -q "error" "$OUT/build.log" || rm -f "$OUT/build.log"
        find "$OUT" -type f | sort;;
    *) echo "unknown phase $phase"; exit 2;;
    esac
done
