#!/usr/bin/env bash
# test_bad_inputs.sh — every bad form of every input a user gives (docs/inputs.md), end to end
# through the built tools: checkpoints, config.json, context/noise files, prompts, prompts files,
# profiles, speedups, the search DB (newer schema, not a DB, read-only, locked, two searches at
# once), a disk that fills up while writing, and the generic flag errors of every tool. Each case
# must give a clear message, the documented exit code (1 failure, 2 usage), and leave no output
# file that looks complete (nor a temp file); nothing committed in a DB may be lost or changed.
# (test_engine_tools.sh covers truncated/misshapen/mistyped checkpoints and NaN in a latent or
# context for astraea-forward; test_search_resume.sh kill -9, Ctrl-C and a second process on a
# busy run.) The full disk is a small tmpfs when this runs as root and may mount one, else a
# file-size limit (ulimit -f, SIGXFSZ ignored).
set -u
B=${1:?build dir}
FX=$(cd "${AST_FIXTURES:-tests/fixtures}/tiny" && pwd)
MODELS=${ASTRAEA_MODELS:-models}
export ASTRAEA_MODELS=$MODELS
T=$(mktemp -d)
MNT=""
FULL=""
cleanup() { [ -n "$MNT" ] && umount "$MNT" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
chmod 755 "$T"
fails=0; checks=0
ok()  { checks=$((checks+1)); echo "ok   $1"; }
bad() { checks=$((checks+1)); fails=$((fails+1)); echo "FAIL $1"; }
G=$B/astraea-generate; F=$B/astraea-forward; S=$B/astraea-search; E=$B/astraea-export
ST=$B/tests/st_tool

# expect NAME RC PATTERN OUT cmd...: exit code RC, message matches PATTERN (extended regex, any
# case), nothing named OUT* left (OUT may be ""), and no temp file in OUT's folder.
expect() {
    local name=$1 want=$2 pat=$3 out=$4; shift 4
    "$@" >"$T/log" 2>&1; local rc=$?
    if [ $rc -ne "$want" ]; then bad "$name: exit $rc, expected $want: $(head -c 400 "$T/log")"; return 1; fi
    if ! grep -qiE -- "$pat" "$T/log"; then bad "$name: message lacks /$pat/: $(head -c 400 "$T/log")"; return 1; fi
    if [ -n "$out" ]; then
        if ls -d "$out"* >/dev/null 2>&1; then bad "$name: left $(ls -d "$out"* | head -3)"; return 1; fi
        if ls "$(dirname "$out")"/*.tmp-* >/dev/null 2>&1; then bad "$name: left a temp file: $(ls "$(dirname "$out")"/*.tmp-*)"; return 1; fi
    fi
    if grep -qE "AddressSanitizer|runtime error:|LeakSanitizer" "$T/log"; then bad "$name: sanitizer report: $(grep -m1 -E "Sanitizer|runtime error" "$T/log")"; return 1; fi
    ok "$name (exit $rc: $(head -c 150 "$T/log" | tr '\n' ' '))"
}
sum() { sha256sum "$@" 2>/dev/null | awk '{print $1}' | tr '\n' ' '; }

# patch_st FILE PYTHON: rewrites a safetensors file; the code sees h (header dict), b (bytearray
# of the whole file), n (header length), data (offset of the data buffer).
patch_st() {
    python3 - "$1" "$2" <<'PY'
import json, math, struct, sys
p, code = sys.argv[1], sys.argv[2]
b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]; data = 8 + n
h = json.loads(b[8:8 + n])
def put(name, i, v):  # element i of tensor name := v (F32/BF16/F16)
    t = h[name]; off = data + t['data_offsets'][0]
    if t['dtype'] == 'F32': b[off + 4 * i: off + 4 * i + 4] = struct.pack('<f', v)
    elif t['dtype'] == 'BF16': b[off + 2 * i: off + 2 * i + 2] = struct.pack('<f', v)[2:]
    else: b[off + 2 * i: off + 2 * i + 2] = struct.pack('<e', v)
exec(code)
open(p, 'wb').write(b)
PY
}
ck() { rm -rf "$T/$1"; cp -r "$FX/orig_f32" "$T/$1"; echo "$T/$1"; }
IN=$FX/forward_in.safetensors
$ST extract "$FX/sample_in.safetensors" context "$T/ctx.safetensors" context
$ST extract "$FX/sample_in.safetensors" neg_context "$T/neg.safetensors" context
$ST extract "$FX/sample_in.safetensors" x "$T/noise.safetensors" x

# ---- checkpoint files -------------------------------------------------------------------------
d=$(ck huge); python3 - "$d/diffusion_pytorch_model.safetensors" <<'PY'
import struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[:8] = struct.pack('<Q', 100000001); open(p, 'wb').write(b)
PY
expect "oversized header (100,000,001 bytes)" 1 "header length 100000001 is larger than the 100,000,000" "$T/o1" $F --checkpoint "$d" --in "$IN" --out "$T/o1"
d=$(ck empty); : >"$d/diffusion_pytorch_model.safetensors"
expect "empty checkpoint file" 1 "empty or too small: 0 bytes" "$T/o2" $F --checkpoint "$d" --in "$IN" --out "$T/o2"
d=$(ck text); echo "<html>404 Not Found</html>" >"$d/diffusion_pytorch_model.safetensors"
expect "an HTML page saved as .safetensors" 1 "larger than the 100,000,000|runs past the end" "$T/o3" $F --checkpoint "$d" --in "$IN" --out "$T/o3"
d=$(ck offs); patch_st "$d/diffusion_pytorch_model.safetensors" "b.extend(b'\0' * 64)"
expect "data past the last tensor" 1 "64 trailing bytes" "$T/o4" $F --checkpoint "$d" --in "$IN" --out "$T/o4"
d=$(ck nanvec); patch_st "$d/diffusion_pytorch_model.safetensors" "put('blocks.1.norm3.bias', 3, float('nan'))"
expect "NaN in a weight vector" 1 "tensor 'blocks.1.norm3.bias' holds 1 NaN/Inf value \(the first, NaN" "$T/o5" $F --checkpoint "$d" --in "$IN" --out "$T/o5"
d=$(ck infmat); patch_st "$d/diffusion_pytorch_model.safetensors" "put('blocks.0.ffn.0.weight', 100, float('inf')); put('blocks.0.ffn.0.weight', 7, float('-inf'))"
expect "Inf in a weight matrix" 1 "tensor 'blocks.0.ffn.0.weight' holds 2 NaN/Inf values \(the first, -Inf, at flat index 7\).*re-download" "$T/o6" $F --checkpoint "$d" --in "$IN" --out "$T/o6"
d=$(ck nanbf); cp "$FX/orig_bf16/"* "$d/"; patch_st "$d/diffusion_pytorch_model.safetensors" "put('head.head.weight', 0, float('nan'))"
expect "NaN in a BF16 matrix" 1 "tensor 'head.head.weight' holds 1 NaN" "$T/o7" $F --checkpoint "$d" --in "$IN" --out "$T/o7"
expect "NaN weights: generate refuses too" 1 "head.head.weight" "$T/o8.safetensors" $G --checkpoint "$d" --context "$T/ctx.safetensors" --out "$T/o8.safetensors"

# ---- config.json ------------------------------------------------------------------------------
d=$(ck cfgjunk); echo '{"dim": 128,' >"$d/config.json"
expect "config.json not JSON" 1 "config.json' is not a JSON object" "$T/o9" $F --checkpoint "$d" --in "$IN" --out "$T/o9"
d=$(ck cfgother); cp "$MODELS/wan-mini/config.json" "$d/config.json"
expect "config.json of another model" 1 "config.json contradicts the tensors" "$T/o10" $F --checkpoint "$d" --in "$IN" --out "$T/o10"
d=$(ck cfgi2v); python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['image_dim']=1280; json.dump(c, open(sys.argv[1],'w'))" "$d/config.json"
expect "config.json of an I2V model" 1 "image-to-video" "$T/o11" $F --checkpoint "$d" --in "$IN" --out "$T/o11"
d=$(ck cfgrange); python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['num_layers']=1e9; json.dump(c, open(sys.argv[1],'w'))" "$d/config.json"
expect "config.json size out of range" 1 "num_layers\" must be a whole number in \[1, 1000\]" "$T/o12" $F --checkpoint "$d" --in "$IN" --out "$T/o12"
expect "checkpoint is not the named model" 1 "is not wan2.1-t2v-1.3b: dim 128 \(expected 1536\)" "$T/o13.safetensors" $G --model wan2.1-t2v-1.3b --checkpoint "$FX/orig_f32" --context "$T/none" --out "$T/o13.safetensors"
echo x >"$T/notackpt.bin"
expect "checkpoint path is some other file" 1 "not a .safetensors checkpoint" "$T/o14" $F --checkpoint "$T/notackpt.bin" --in "$IN" --out "$T/o14"

# ---- context, noise and input files ------------------------------------------------------------
W="--checkpoint $FX/orig_f32 --backend cpu --steps 2 --guidance 1 --frames 5 --height 64 --width 96"
cp "$T/ctx.safetensors" "$T/ctxinf.safetensors"; patch_st "$T/ctxinf.safetensors" "put('context', 40, float('inf'))"
expect "Inf in a context file" 1 "ctxinf.safetensors': tensor 'context' holds a NaN or Inf at row 0, column 40" "$T/o15.safetensors" $G $W --context "$T/ctxinf.safetensors" --out "$T/o15.safetensors"
$ST extract "$FX/forward_in.safetensors" x "$T/wrongctx.safetensors" context
expect "context of the wrong shape" 1 "tensor 'context' must be \[L <= " "$T/o16.safetensors" $G $W --context "$T/wrongctx.safetensors" --out "$T/o16.safetensors"
cp "$T/ctx.safetensors" "$T/ctxi32.safetensors"; patch_st "$T/ctxi32.safetensors" "h['context']['dtype'] = 'I32'; s = json.dumps(h).encode(); s += b' ' * (-len(s) % 8); b = bytearray(struct.pack('<Q', len(s)) + s + b[data:])"
expect "context of the wrong dtype" 1 "tensor 'context' must be F32, BF16 or F16, got I32" "$T/o16b.safetensors" $G $W --context "$T/ctxi32.safetensors" --out "$T/o16b.safetensors"
cp "$T/noise.safetensors" "$T/noisei32.safetensors"; patch_st "$T/noisei32.safetensors" "h['x']['dtype'] = 'I32'; s = json.dumps(h).encode(); s += b' ' * (-len(s) % 8); b = bytearray(struct.pack('<Q', len(s)) + s + b[data:])"
expect "--init-noise of the wrong dtype" 1 "tensor 'x' must be F32, got I32" "$T/o16c.safetensors" $G --checkpoint "$FX/orig_f32" --init-noise "$T/noisei32.safetensors" --context "$T/ctx.safetensors" --guidance 1 --steps 2 --out "$T/o16c.safetensors"
expect "context file missing" 1 "cannot open safetensors file '$T/nope.safetensors': No such file" "$T/o17.safetensors" $G $W --context "$T/nope.safetensors" --out "$T/o17.safetensors"
cp "$T/noise.safetensors" "$T/noisenan.safetensors"; patch_st "$T/noisenan.safetensors" "put('x', 5, float('nan'))"
expect "NaN in --init-noise" 1 "NaN or Inf at flat index 5" "$T/o18.safetensors" $G --checkpoint "$FX/orig_f32" --init-noise "$T/noisenan.safetensors" --context "$T/ctx.safetensors" --guidance 1 --steps 2 --out "$T/o18.safetensors"
expect "context file as --init-noise" 1 "no tensor 'x'" "$T/o19.safetensors" $G --checkpoint "$FX/orig_f32" --init-noise "$T/ctx.safetensors" --context "$T/ctx.safetensors" --guidance 1 --steps 2 --out "$T/o19.safetensors"
cp "$T/ctx.safetensors" "$T/ctxhuge.safetensors"; python3 - "$T/ctxhuge.safetensors" <<'PY'
import struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[:8] = struct.pack('<Q', 2**63); open(p, 'wb').write(b)
PY
expect "context with an absurd header length" 1 "larger than the 100,000,000" "$T/o20.safetensors" $G $W --context "$T/ctxhuge.safetensors" --out "$T/o20.safetensors"

# ---- prompts (wan-mini) and prompts files --------------------------------------------------------
expect "unknown word" 1 "unknown word 'dragon' in prompt; wan-mini knows: a, an" "$T/o21.gif" $G --prompt "a red dragon moves left" --out "$T/o21.gif"
expect "too many words" 1 "prompt has 20 words, but wan-mini takes at most 16" "$T/o22.gif" $G --prompt "$(printf 'a %.0s' $(seq 20))" --out "$T/o22.gif"
expect "a prompt for a model without a text encoder" 1 "takes its text context from a file" "$T/o23.safetensors" $G --checkpoint "$FX/orig_f32" --prompt "a red circle" --out "$T/o23.safetensors"
SYN="--model synthetic --target-speedup 2x --steps 16 --population 8 --parents 3 --elites 1 --children 6 --generations 4 --seed 3 --measure-repeats 1 --quiet"
expect "prompts file missing" 1 "cannot open '$T/noprompts.txt'" "" $S --model wan-mini --target-speedup 2x --prompts "$T/noprompts.txt" --db "$T/p1.db" --latency-model 0.001,0.02
printf '# only comments\n\n   \n' >"$T/empty.txt"
expect "prompts file without prompts" 1 "has no prompts" "" $S --model wan-mini --target-speedup 2x --prompts "$T/empty.txt" --db "$T/p2.db" --latency-model 0.001,0.02
printf 'a red circle moves left\na purple dragon\n' >"$T/dragon.txt"
expect "prompts file with an unknown word" 1 "unknown word 'dragon'" "" $S --model wan-mini --target-speedup 2x --prompts "$T/dragon.txt" --db "$T/p3.db" --latency-model 0.001,0.02 --steps 4 --guidance 1
printf '%s\n' "$T/nope.safetensors" >"$T/wanprompts.txt"
expect "prompts file naming a missing context file" 1 "nope.safetensors" "" $S --model "$FX/orig_f32" --target-speedup 2x --prompts "$T/wanprompts.txt" --db "$T/p4.db" --latency-model 0.001,0.02 --guidance 1 --frames 5 --height 64 --width 96 --steps 4

# ---- profiles ---------------------------------------------------------------------------------
prof() { # NAME JSON-EDIT: a full wan-mini profile (6 steps, latent 8x32x32) edited by python
    python3 - "$T/$1.json" "$2" <<'PY'
import json, sys
p = {"format_version": 1, "model_id": "wan-mini", "checkpoint_hash": None,
     "latent": {"frames": 8, "height": 32, "width": 32}, "pixels": {"frames": 8, "height": 32, "width": 32},
     "steps": 3, "sampler": "euler", "shift": 3, "guidance": 1, "budgets": [1, 0.5, 0.5],
     "measured_speedup": 1.4, "predicted_speedup": 1.5}
exec(sys.argv[2])
open(sys.argv[1], 'w').write(json.dumps(p) if isinstance(p, dict) else p)
PY
    echo "$T/$1.json"
}
GP="--prompt a-red-circle --backend cpu"
expect "profile for another model" 1 "was made for model 'wan2.1-t2v-1.3b', not 'wan-mini'" "$T/g1.gif" $G $GP --profile "$(prof m "p['model_id'] = 'wan2.1-t2v-1.3b'")" --out "$T/g1.gif"
expect "profile for another checkpoint" 1 "was made for checkpoint 0123456789abcdef, but this checkpoint hashes to" "$T/g2.gif" $G $GP --profile "$(prof h "p['checkpoint_hash'] = '0123456789abcdef'")" --out "$T/g2.gif"
expect "profile for another shape" 1 "was made for latent frames x height x width = 8 x 32 x 32, this run is 4 x 32 x 32" "$T/g3.gif" $G $GP --profile "$(prof s "")" --frames 4 --out "$T/g3.gif"
expect "profile for another step count" 1 "has 3 budgets \(one per step\) but this run has 5 steps \(pass --steps 3" "$T/g4.gif" $G $GP --profile "$(prof st "")" --steps 5 --out "$T/g4.gif"
expect "profile from a newer astraea" 1 "made by a newer astraea \(format 7 > 1\)" "$T/g5.gif" $G $GP --profile "$(prof v "p['format_version'] = 7")" --out "$T/g5.gif"
expect "profile with budgets[0] != 1" 1 "budgets\[0\] is 0.5, but step 0 always runs dense" "$T/g6.gif" $G $GP --profile "$(prof b0 "p['budgets'][0] = 0.5")" --out "$T/g6.gif"
expect "profile with a budget out of [0, 1]" 1 "field 'budgets\[2\]' must be a number in \[0, 1\], got 1.5" "$T/g7.gif" $G $GP --profile "$(prof b2 "p['budgets'][2] = 1.5")" --out "$T/g7.gif"
expect "profile with a typo'd field" 1 "unknown field 'budget'" "$T/g8.gif" $G $GP --profile "$(prof typo "p = '{\"budget\": [1, 0.5]}'")" --out "$T/g8.gif"
expect "profile not JSON" 1 "is not valid JSON \(error near byte" "$T/g9.gif" $G $GP --profile "$(prof junk "p = '{\"budgets\": [1, 0.5'")" --out "$T/g9.gif"
expect "profile file missing" 1 "reading profile: cannot open" "$T/g10.gif" $G $GP --profile "$T/nope.json" --out "$T/g10.gif"
expect "--profile with --budget" 2 "give --profile or --budget, not both" "$T/g11.gif" $G $GP --profile "$(prof st "")" --budget 0.5 --out "$T/g11.gif"
if $G --prompt "a red circle moves left" --profile "$(prof good "")" --backend cpu --quiet --out "$T/good.gif" >"$T/log" 2>&1 && [ -s "$T/good.gif" ]; then
    ok "a matching profile applies (3 steps euler, guidance 1 from the profile)"
else bad "a matching profile: $(tail -3 "$T/log")"; fi

# ---- speedups ----------------------------------------------------------------------------------
for v in 1 1x 0.5x 0 -2 abc inf nan 1e400; do
    expect "--target-speedup $v" 2 "target-speedup (must be above|expects a speedup)" "$T/sp.db" $S --model synthetic --target-speedup "$v" --db "$T/sp.db"
done
expect "export --speedup 1" 2 "--speedup must be above 1x" "$T/sp.json" $E --db "$T/sp.db" --speedup 1 --out "$T/sp.json"
$S $SYN --db "$T/reach.db" >/dev/null 2>&1
before=$(sum "$T/reach.db")
expect "a speedup out of reach" 1 "target speedup 500.00x is out of reach: .* allows at most" "$T/reach.json" $S $SYN --target-speedup 500x --db "$T/reach.db" --out "$T/reach.json"
if $E --db "$T/reach.db" --run 1 --out "$T/r1.json" >/dev/null 2>&1 && $S --db "$T/reach.db" --list | grep -q "^ *1 .* done"; then
    ok "the out-of-reach attempt left run 1 complete and exportable"
else bad "run 1 after the out-of-reach attempt: $($S --db "$T/reach.db" --list 2>&1)"; fi

# ---- the search DB -----------------------------------------------------------------------------
$S $SYN --db "$T/base.db" >/dev/null 2>&1 || bad "base search failed"
$E --db "$T/base.db" --out "$T/base.json" >/dev/null 2>&1
cp "$T/base.db" "$T/newer.db"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version = 99'); c.commit(); c.execute('PRAGMA journal_mode=DELETE'); c.close()" "$T/newer.db"
before=$(sum "$T/newer.db")
expect "DB from a newer schema: search" 1 "was made by a newer astraea \(schema 99 > [0-9]+\); upgrade" "" $S $SYN --db "$T/newer.db"
expect "DB from a newer schema: export" 1 "newer astraea" "$T/nx.json" $E --db "$T/newer.db" --out "$T/nx.json"
expect "DB from a newer schema: --list" 1 "newer astraea" "" $S --list --db "$T/newer.db"
[ "$(sum "$T/newer.db")" = "$before" ] && ok "the newer DB is untouched" || bad "the newer DB was changed"
echo "not a database" >"$T/junk.db"; before=$(sum "$T/junk.db")
expect "--db is not SQLite" 1 "is not an SQLite database" "" $S $SYN --db "$T/junk.db"
[ "$(sum "$T/junk.db")" = "$before" ] && ok "the non-DB file is untouched" || bad "the non-DB file was changed"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table photos(x)'); c.commit()" "$T/other.db"
expect "--db of another program" 1 "database of another program" "" $S $SYN --db "$T/other.db"
expect "--db in a missing folder" 1 "check that the folder exists" "" $S $SYN --db "$T/no/such/dir.db"
mkdir -p "$T/dir.db"
expect "--db is a folder" 1 "search DB|folder|directory" "" $S $SYN --db "$T/dir.db"
# read-only: as root, run as 'nobody' (root writes through permissions)
mkdir -p "$T/ro"; cp "$T/base.db" "$T/ro/ro.db"; chmod 444 "$T/ro/ro.db"; chmod 555 "$T/ro"
as_user=""
if [ "$(id -u)" -eq 0 ]; then
    command -v setpriv >/dev/null && as_user="setpriv --reuid=65534 --regid=65534 --clear-groups"
fi
if [ "$(id -u)" -ne 0 ] || [ -n "$as_user" ]; then
    before=$(sum "$T/ro/ro.db")
    expect "read-only DB: search refuses" 1 "is read-only" "" $as_user $S $SYN --db "$T/ro/ro.db"
    mkdir -p "$T/out"; chmod 777 "$T/out"
    if $as_user $E --db "$T/ro/ro.db" --out "$T/out/ro.json" >"$T/log" 2>&1 && cmp -s <(grep budgets "$T/out/ro.json") <(grep budgets "$T/base.json"); then
        ok "read-only DB: export reads it"
    else bad "read-only DB: export: $(cat "$T/log")"; fi
    if $as_user $S --list --db "$T/ro/ro.db" 2>&1 | grep -q " done "; then ok "read-only DB: --list reads it"; else bad "read-only DB: --list"; fi
    [ "$(sum "$T/ro/ro.db")" = "$before" ] && ok "the read-only DB is untouched" || bad "the read-only DB changed"
else
    echo "note: root without setpriv: read-only DB checks left to test_store"
fi
chmod 755 "$T/ro"
# locked: another program holds the write lock for a while (busy timeout 10 s)
cp "$T/base.db" "$T/locked.db"
python3 -c "
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); open(sys.argv[2], 'w').close()
time.sleep(float(sys.argv[3])); c.execute('ROLLBACK')" "$T/locked.db" "$T/held1" 2 &
lp=$!; while [ ! -e "$T/held1" ]; do sleep 0.05; done
t0=$(date +%s%N)
if $S $SYN --seed 4 --db "$T/locked.db" >"$T/log" 2>&1; then
    ok "DB locked by another program for 2 s: the search waited ($(( ($(date +%s%N) - t0) / 1000000 )) ms) and ran"
else bad "locked 2 s: $(tail -2 "$T/log")"; fi
wait $lp
python3 -c "
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); open(sys.argv[2], 'w').close()
time.sleep(float(sys.argv[3])); c.execute('ROLLBACK')" "$T/locked.db" "$T/held2" 13 &
lp=$!; while [ ! -e "$T/held2" ]; do sleep 0.05; done
expect "DB locked by another program for 13 s" 1 "another process kept the DB busy for more than 10 s" "$T/lk.json" $S $SYN --seed 5 --db "$T/locked.db" --out "$T/lk.json"
wait $lp
if $E --db "$T/locked.db" --run 1 --out "$T/l1.json" >/dev/null 2>&1 && cmp -s <(grep budgets "$T/l1.json") <(grep budgets "$T/base.json") \
    && [ "$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])" "$T/locked.db")" = ok ]; then
    ok "after the lock: integrity ok, run 1 unchanged"
else bad "after the lock: run 1 changed or DB damaged"; fi

# ---- two searches on one DB at once ------------------------------------------------------------
TWO="--model synthetic --synthetic-ms 2 --target-speedup 2x --steps 16 --population 8 --parents 3 --elites 1 --children 6 --generations 4 --measure-repeats 1 --quiet"
$S $TWO --seed 11 --db "$T/solo11.db" >/dev/null 2>&1; $S $TWO --seed 12 --db "$T/solo12.db" >/dev/null 2>&1
$E --db "$T/solo11.db" --out "$T/s11.json" >/dev/null 2>&1; $E --db "$T/solo12.db" --out "$T/s12.json" >/dev/null 2>&1
$S $TWO --seed 11 --db "$T/two.db" >"$T/two1.log" 2>&1 & p1=$!
$S $TWO --seed 12 --db "$T/two.db" >"$T/two2.log" 2>&1 & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
$E --db "$T/two.db" --run 1 --out "$T/t1.json" >/dev/null 2>&1; $E --db "$T/two.db" --run 2 --out "$T/t2.json" >/dev/null 2>&1
fp() { grep -E '"(budgets|mse|predicted_speedup)"' "$1" 2>/dev/null | tr -d ' \t\n'; }
pair=$(printf '%s\n%s\n' "$(fp "$T/t1.json")" "$(fp "$T/t2.json")" | sort); solo=$(printf '%s\n%s\n' "$(fp "$T/s11.json")" "$(fp "$T/s12.json")" | sort)
integ=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])" "$T/two.db")
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$integ" = ok ] && [ -n "$(fp "$T/s11.json")" ] && [ "$pair" = "$solo" ]; then
    ok "two searches (different runs) at once on one DB: both done, integrity ok, each equal to its solo run"
else bad "two searches at once: exits $r1/$r2, integrity $integ, logs: $(cat "$T/two1.log" "$T/two2.log" | head -c 600)"; fi
$S $TWO --seed 11 --synthetic-ms 30 --db "$T/same.db" >/dev/null 2>&1 & p1=$!
sleep 1
expect "the same run from a second process" 1 "being searched by another process \(pid [0-9]+" "" $S $TWO --seed 11 --synthetic-ms 30 --db "$T/same.db"
wait $p1 && ok "the first process finished the run" || bad "the first process failed"

# ---- a disk that fills up while writing ------------------------------------------------------------
# full KIB CMD...: runs CMD with about KIB KiB of room left in $FULL (a 256 KiB tmpfs filled with
# ballast) or, without the mount, with a KIB KiB file-size limit.
MNT=""
if [ "$(id -u)" -eq 0 ] && mkdir -p "$T/mnt" && mount -t tmpfs -o size=256k tmpfs "$T/mnt" 2>/dev/null; then
    MNT=$T/mnt; FULL=$MNT; echo "full disk: a 256 KiB tmpfs"
else
    FULL=$T/fsz; mkdir -p "$FULL"; echo "full disk: a file-size limit (ulimit -f; no tmpfs mount here)"
fi
full() {
    local kib=$1; shift
    if [ -n "$MNT" ]; then
        rm -f "$MNT/ballast"; head -c $(( (256 - kib) * 1024 )) /dev/zero >"$MNT/ballast" 2>/dev/null
        "$@"; local rc=$?; rm -f "$MNT/ballast"; return $rc
    fi
    bash -c 'trap "" XFSZ; ulimit -f "$0"; exec "$@"' "$kib" "$@"
}
expect "generate: GIF on a full disk" 1 "disk|too large" "$FULL/clip.gif" full 8 $G --prompt "a red circle" --steps 2 --guidance 1 --quiet --out "$FULL/clip.gif"
expect "generate: PNG frames on a full disk" 1 "disk|too large" "$FULL/clip-" full 8 $G --prompt "a red circle" --steps 2 --guidance 1 --quiet --out "$FULL/clip.png"
expect "generate: latent on a full disk" 1 "disk|too large" "$FULL/lat.safetensors" full 8 $G --checkpoint "$FX/orig_f32" --init-noise "$T/noise.safetensors" --context "$T/ctx.safetensors" --guidance 1 --steps 2 --backend cpu --out "$FULL/lat.safetensors"
expect "forward on a full disk" 1 "disk|too large" "$FULL/fwd.safetensors" full 8 $F --checkpoint "$FX/orig_f32" --in "$IN" --out "$FULL/fwd.safetensors"
expect "export on a full disk" 1 "disk|too large" "$FULL/p.json" full 0 $E --db "$T/base.db" --out "$FULL/p.json"
expect "search --out on a full disk" 1 "disk|too large" "$FULL/so.json" full 0 $S $SYN --db "$T/base.db" --out "$FULL/so.json"
# the DB itself on the full disk: committed evaluations survive; after freeing space the same
# command resumes to the result of an uninterrupted run
DBS="--model synthetic --target-speedup 2x --steps 16 --population 8 --parents 3 --elites 1 --children 6 --generations 4 --seed 3 --measure-repeats 1 --quiet"
[ -n "$MNT" ] && mount -o remount,size=400k "$MNT"
if [ -n "$MNT" ]; then $S $DBS --db "$FULL/s.db" >"$T/log" 2>&1; else full 64 $S $DBS --db "$FULL/s.db" >"$T/log" 2>&1; fi
rc=$?
cands() { # integrity, count, then every candidate row (measured_s is set on the best at the end)
    python3 -c "
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute('pragma integrity_check').fetchone()[0], c.execute('select count(*) from candidates').fetchone()[0])
cols = [r[1] for r in c.execute('pragma table_info(candidates)') if r[1] != 'measured_s']
for r in c.execute('select %s from candidates order by id' % ','.join(cols)): print(r)" "$1"; }
if [ $rc -eq 1 ] && grep -qiE "disk is full|I/O error|disk" "$T/log"; then
    ok "search with its DB on a full disk: exit 1: $(head -c 160 "$T/log")"
    [ -n "$MNT" ] && mount -o remount,size=8m "$MNT"
    cands "$FULL/s.db" >"$T/before.txt"
    nb=$(head -1 "$T/before.txt" | awk '{print $2}')
    if $S $DBS --db "$FULL/s.db" >"$T/log" 2>&1; then
        cands "$FULL/s.db" >"$T/after.txt"
        $E --db "$FULL/s.db" --out "$T/fullres.json" >/dev/null 2>&1
        # every candidate committed before the failure is still there, unchanged
        if [ "$(head -1 "$T/before.txt" | awk '{print $1}')" = ok ] && [ "$(head -1 "$T/after.txt" | awk '{print $1}')" = ok ] \
            && [ -z "$(comm -23 <(tail -n +2 "$T/before.txt" | sort) <(tail -n +2 "$T/after.txt" | sort))" ] \
            && [ "$(fp "$T/fullres.json")" = "$(fp "$T/base.json")" ]; then
            ok "after freeing space: resumed; the $nb candidates committed before the failure are unchanged; same best as an uninterrupted run"
        else bad "resume after a full disk: integrity/candidates/best differ ($nb before)"; fi
    else bad "resume after a full disk: $(tail -2 "$T/log")"; fi
else bad "search on a full disk: exit $rc: $(tail -2 "$T/log")"; fi

# ---- flags: every tool refuses a bad command line with exit 2 and names the flag ------------------
for tool in astraea-generate astraea-forward astraea-search astraea-export astraea-bench; do
    expect "$tool: unknown option" 2 "unknown option '--no-such-flag'" "" $B/$tool --no-such-flag
    expect "$tool: positional argument" 2 "unexpected argument 'stray'" "" $B/$tool stray
    $B/$tool --help >"$T/log" 2>&1 && grep -q "Usage:" "$T/log" && ok "$tool --help" || bad "$tool --help"
done
expect "generate: missing value" 2 "--steps needs a value" "" $G --out x.gif --steps
expect "generate: empty value" 2 "--prompt needs a non-empty value" "" $G --out x.gif --prompt=
expect "generate: not a number" 2 "--seed expects a whole number, got '4.5'" "" $G --out x.gif --seed 4.5
expect "generate: out of range" 2 "--steps must be between 1 and 10000, got 0" "" $G --out x.gif --steps 0
expect "generate: budget out of range" 2 "--budget must be between 0 and 1, got 1.5" "" $G --out x.gif --budget 1.5
expect "generate: NaN guidance" 2 "--guidance expects a number, got 'nan'" "" $G --out x.gif --guidance nan
expect "generate: flag with a value" 2 "--quiet takes no value" "" $G --out x.gif --quiet=1
expect "generate: no --out" 2 "--out FILE is required" "" $G --prompt "a red circle"
expect "generate: --prompt and --context" 2 "not both" "" $G --out x.gif --prompt a --context c
expect "generate: bad sampler" 2 "--sampler must be unipc or euler, got 'ddim'" "" $G --out x.gif --sampler ddim
expect "generate: bad cache" 2 "--cache must be residual or output" "" $G --out x.gif --cache all
expect "generate: bad delta norm" 2 "--delta-norm must be mean or none" "" $G --out x.gif --delta-norm max
expect "generate: bad output name" 1 "use a .safetensors, .gif or .png name" "$T/clip.mp4" $G --prompt a --out "$T/clip.mp4"
expect "generate: bad backend" 1 "unknown backend 'tpu'" "$T/bk.gif" $G --prompt "a red circle" --backend tpu --out "$T/bk.gif"
if [ ! -e /dev/nvidia0 ]; then
    expect "generate: --backend cuda without a GPU" 1 "no usable CUDA device" "$T/cu.gif" $G --prompt "a red circle" --backend cuda --out "$T/cu.gif"
fi
expect "generate: --gpus twice" 2 "--gpus names device 1 twice" "" $G --out x.gif --gpus 1,1
expect "generate: --gpus not a list" 2 "--gpus expects CUDA device indices" "" $G --out x.gif --gpus a,b
expect "generate: --gpus with --gpu" 2 "give --gpu N or --gpus LIST, not both" "" $G --out x.gif --gpus 0,1 --gpu 0
expect "generate: --gpus on the CPU" 2 "--gpus needs the CUDA backend" "" $G --out x.gif --gpus 0,1 --backend cpu
if [ ! -e /dev/nvidia0 ]; then
    expect "generate: --gpus without a GPU" 1 "no usable CUDA device" "$T/mg.gif" $G --prompt "a red circle" --gpus 0,1 --out "$T/mg.gif"
fi
expect "search: --gpus-per-eval without enough --gpus" 2 "--gpus-per-eval 2 needs --gpus with a multiple of 2" "" $S --model synthetic --target-speedup 2x --gpus-per-eval 2 --gpus 0,1,2 --db "$T/x.db"
expect "bench: --gpu-counts not a count" 2 "--gpu-counts: 1.5 is not a GPU count" "" $B/astraea-bench --multigpu-json "$T/mg.json" --gpu-counts 1,1.5
expect "forward: missing inputs" 2 "--checkpoint, --in and --out are all required" "" $F --in "$IN"
expect "search: no target" 2 "--target-speedup X is required" "" $S --model synthetic --db "$T/x.db"
expect "search: --resume with --seed" 2 "leave out --target-speedup and --seed" "" $S --resume 1 --seed 3 --db "$T/x.db"
expect "search: bad latency model" 2 "--latency-model expects A >= 0, B > 0" "" $S --model synthetic --target-speedup 2x --latency-model 1,-1 --db "$T/x.db"
expect "search: --steps 1" 2 "--steps must be between 2 and" "" $S --model synthetic --target-speedup 2x --steps 1 --db "$T/x.db"
expect "search: --resume of a run that does not exist" 1 "has no run 9" "" $S --resume 9 --db "$T/base.db"
expect "search: unknown model" 1 "neither a checkpoint folder nor a built-in model" "" $S --model nosuch --target-speedup 2x --db "$T/x2.db"
expect "export: --candidate and --speedup" 2 "give --candidate or --speedup, not both" "" $E --db "$T/base.db" --candidate 3 --speedup 2 --out "$T/x.json"
expect "export: no DB" 1 "no search DB at" "$T/x.json" $E --db "$T/none.db" --out "$T/x.json"
expect "export: candidate that does not exist" 1 "no candidate 99999" "$T/x.json" $E --db "$T/base.db" --candidate 99999 --out "$T/x.json"
[ ! -e "$T/x.db" ] && ok "searches refused for their command line created no DB" || bad "a refused search created a DB: $(ls "$T"/x.db 2>&1)"
expect "--list of a DB that does not exist" 1 "no search DB at" "$T/typo.db" $S --list --db "$T/typo.db"

echo "$((checks - fails)) of $checks checks passed"
[ $fails -eq 0 ]
