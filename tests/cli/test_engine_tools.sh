#!/usr/bin/env bash
# test_engine_tools.sh — astraea-forward and astraea-generate end to end against the PyTorch
# goldens (tests/fixtures/tiny), and every malformed checkpoint or input we can think of: each
# must give a clear error, a non-zero exit, and leave no output file behind.
set -u
B=${1:?build dir}
FX=${AST_FIXTURES:-tests/fixtures}/tiny
ST=$B/tests/st_tool
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; checks=0
ok()   { checks=$((checks+1)); echo "ok   $1"; }
bad()  { checks=$((checks+1)); fails=$((fails+1)); echo "FAIL $1"; }
# expect_fail NAME PATTERN OUTFILE cmd...: non-zero exit, message matches, OUTFILE absent
expect_fail() {
    local name=$1 pat=$2 out=$3; shift 3
    "$@" >"$T/log" 2>&1; local rc=$?
    if [ $rc -eq 0 ]; then bad "$name: exit 0 (expected an error)"; return; fi
    if ! grep -qiE "$pat" "$T/log"; then bad "$name: message lacks /$pat/: $(head -c 300 "$T/log")"; return; fi
    if [ -n "$out" ] && ls "$out"* >/dev/null 2>&1; then bad "$name: left $(ls "$out"*)"; return; fi
    ok "$name (exit $rc: $(head -c 120 "$T/log" | tr '\n' ' '))"
}

# ---- forward: every layout against its golden (rel L2 <= 1e-4)
for pair in orig_f32:forward_out orig_bf16:forward_out_bf16 diffusers:forward_out_bf16 prefixed:forward_out_f16; do
    ck=${pair%%:*}; gold=${pair##*:}
    if $B/astraea-forward --checkpoint $FX/$ck --in $FX/forward_in.safetensors --out $T/$ck.safetensors >$T/log 2>&1 \
        && $ST compare $T/$ck.safetensors out $FX/$gold.safetensors out 1e-4 >$T/cmp 2>&1; then
        ok "astraea-forward $ck: $(cat $T/cmp)"
    else bad "astraea-forward $ck: $(cat $T/log $T/cmp 2>/dev/null | head -5)"; fi
done

# ---- generate --init-noise reproduces the reference 6-step UniPC + CFG run (1e-4)
$ST extract $FX/sample_in.safetensors x $T/noise.safetensors x
$ST extract $FX/sample_in.safetensors context $T/ctx.safetensors context
$ST extract $FX/sample_in.safetensors neg_context $T/neg.safetensors context
for s in unipc:sample_out euler:sample_euler_out; do
    if $B/astraea-generate --checkpoint $FX/orig_f32 --init-noise $T/noise.safetensors --context $T/ctx.safetensors \
        --negative-context $T/neg.safetensors --steps 6 --shift 5 --guidance 5 --sampler ${s%%:*} \
        --backend cpu --out $T/gen.safetensors >$T/log 2>&1 \
        && $ST compare $T/gen.safetensors x $FX/${s##*:}.safetensors x 1e-4 >$T/cmp 2>&1; then
        ok "astraea-generate --init-noise ${s%%:*}: $(cat $T/cmp)"
    else bad "astraea-generate ${s%%:*}: $(cat $T/log $T/cmp 2>/dev/null | tail -5)"; fi
done

# ---- malformed checkpoints
mk() { rm -rf "$T/$1"; cp -r $FX/orig_f32 "$T/$1"; echo "$T/$1/diffusion_pytorch_model.safetensors"; }
f=$(mk trunc); head -c 100000 $FX/orig_f32/diffusion_pytorch_model.safetensors >"$f"
expect_fail "truncated checkpoint" "truncated|size" $T/o1 $B/astraea-forward --checkpoint $T/trunc --in $FX/forward_in.safetensors --out $T/o1
f=$(mk hdr); printf '\xff\xff\xff\xff\xff\xff\xff\x7f' | dd of="$f" bs=1 seek=0 conv=notrunc 2>/dev/null
expect_fail "header length beyond the file" "header" $T/o2 $B/astraea-forward --checkpoint $T/hdr --in $FX/forward_in.safetensors --out $T/o2
f=$(mk json); printf 'XXXX' | dd of="$f" bs=1 seek=8 conv=notrunc 2>/dev/null
expect_fail "garbage header JSON" "JSON" $T/o3 $B/astraea-forward --checkpoint $T/json --in $FX/forward_in.safetensors --out $T/o3
f=$(mk offs); python3 - "$f" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); k = next(k for k in h if k != '__metadata__')
h[k]['data_offsets'][1] += 4; s = json.dumps(h).encode(); s += b' ' * (-len(s) % 8)
open(p, 'wb').write(struct.pack('<Q', len(s)) + s + b[8+n:])
PY
expect_fail "bad offsets" "offset|bytes|size" $T/o4 $B/astraea-forward --checkpoint $T/offs --in $FX/forward_in.safetensors --out $T/o4
f=$(mk dtype); python3 - "$f" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); h['head.head.bias']['dtype'] = 'I32'
s = json.dumps(h).encode(); s += b' ' * (-len(s) % 8)
open(p, 'wb').write(struct.pack('<Q', len(s)) + s + b[8+n:])
PY
expect_fail "wrong dtype" "dtype|I32" $T/o5 $B/astraea-forward --checkpoint $T/dtype --in $FX/forward_in.safetensors --out $T/o5
f=$(mk shape); python3 - "$f" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); h['blocks.0.ffn.0.bias']['shape'] = [64, 4]
s = json.dumps(h).encode(); s += b' ' * (-len(s) % 8)
open(p, 'wb').write(struct.pack('<Q', len(s)) + s + b[8+n:])
PY
expect_fail "wrong shape" "blocks.0.ffn.0.bias" $T/o6 $B/astraea-forward --checkpoint $T/shape --in $FX/forward_in.safetensors --out $T/o6
f=$(mk missing); python3 - "$f" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); h['blocks.1.cross_attn.norm_k.weightX'] = h.pop('blocks.1.cross_attn.norm_k.weight')
s = json.dumps(h).encode(); s += b' ' * (-len(s) % 8)
open(p, 'wb').write(struct.pack('<Q', len(s)) + s + b[8+n:])
PY
expect_fail "missing tensor" "blocks.1.cross_attn.norm_k.weight" $T/o7 $B/astraea-forward --checkpoint $T/missing --in $FX/forward_in.safetensors --out $T/o7
expect_fail "no checkpoint folder" "neither a checkpoint folder" $T/o8 $B/astraea-forward --checkpoint $T/nope --in $FX/forward_in.safetensors --out $T/o8

# ---- bad inputs
$ST nan $FX/forward_in.safetensors x $T/nan_in.safetensors
expect_fail "NaN in the input latent" "NaN" $T/o9 $B/astraea-forward --checkpoint $FX/orig_f32 --in $T/nan_in.safetensors --out $T/o9
$ST nan $FX/forward_in.safetensors context $T/nanctx.safetensors
expect_fail "NaN in the context" "NaN" $T/o10 $B/astraea-forward --checkpoint $FX/orig_f32 --in $T/nanctx.safetensors --out $T/o10
$ST extract $FX/forward_in.safetensors context $T/only_ctx.safetensors context
expect_fail "input without x" "'x'" $T/o11 $B/astraea-forward --checkpoint $FX/orig_f32 --in $T/only_ctx.safetensors --out $T/o11
expect_fail "unknown flag" "unknown option" "" $B/astraea-forward --chekpoint x
expect_fail "missing value" "needs a value" "" $B/astraea-generate --steps
expect_fail "bad number" "whole number" "" $B/astraea-generate --steps 3x --out $T/o12
expect_fail "generate without a context for a Wan model" "context" $T/o13.safetensors $B/astraea-generate --checkpoint $FX/orig_f32 --out $T/o13.safetensors --frames 9 --height 16 --width 16
expect_fail "gif from a latent model" "latent" $T/o14.gif $B/astraea-generate --checkpoint $FX/orig_f32 --init-noise $T/noise.safetensors --context $T/ctx.safetensors --negative-context $T/neg.safetensors --steps 2 --backend cpu --out $T/o14.gif
expect_fail "CFG without a negative context" "negative-context" $T/o15.safetensors $B/astraea-generate --checkpoint $FX/orig_f32 --init-noise $T/noise.safetensors --context $T/ctx.safetensors --steps 2 --out $T/o15.safetensors

# ---- the multi-GPU scaling mode of astraea-bench, run with CPU ranks (threads): its JSON and
# --append (the 4- and 8-GPU machines add to the 2-GPU file)
MG="$B/astraea-bench --checkpoint $FX/orig_f32 --backend cpu --frames 9 --height 64 --width 96 --gpu-counts 1,2 --mg-thetas 1,0.5 --repeats 1"
if $MG --multigpu-json $T/mg.json >$T/mg.log 2>&1 && $MG --multigpu-json $T/mg.json --append >>$T/mg.log 2>&1 \
    && python3 - $T/mg.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert all(k in d for k in ("device", "commit", "date", "command", "timing", "points")), d.keys()
pts = d["points"]
assert len(pts) == 8, len(pts)            # 2 counts x 2 budgets, twice (--append)
for p in pts:
    assert set(p) >= {"gpus", "tokens", "theta", "ms", "api_ms", "speedup_vs_1gpu_dense", "device"}, p
    assert p["tokens"] == 3 * 4 * 6 and p["ms"] > 0, p
    assert p["ms"] == p["api_ms"], p      # CPU ranks: no device time, both are the wall time
base = [p for p in pts[:4] if p["gpus"] == 1 and p["theta"] == 1][0]
assert abs(base["speedup_vs_1gpu_dense"] - 1) < 1e-9, base
PY
then ok "astraea-bench --multigpu-json (CPU ranks): points for P = 1, 2 and theta 1, 0.5; --append keeps the earlier ones"
else bad "astraea-bench --multigpu-json: $(tail -5 $T/mg.log)"; fi
# --append to a file from before the device timing (no api_ms): its points say their ms is api_ms
echo '{"points": [{"gpus": 1, "tokens": 72, "theta": 1, "ms": 5.0, "device": "old"}]}' >$T/mg_old.json
if $MG --gpu-counts 1 --mg-thetas 1 --multigpu-json $T/mg_old.json --append >$T/mg.log 2>&1 \
    && python3 - $T/mg_old.json <<'PY'
import json, sys
old, new = json.load(open(sys.argv[1]))["points"]
assert old["api_ms"] == old["ms"] == 5 and old["ms_is"].startswith("api_ms"), old
assert "ms_is" not in new and new["api_ms"] > 0, new
PY
then ok "astraea-bench --append: points of an older file keep their ms, marked as the API wall time"
else bad "astraea-bench --append to an older file: $(tail -5 $T/mg.log)"; fi

echo "$((checks-fails)) of $checks checks passed"
[ $fails -eq 0 ]
