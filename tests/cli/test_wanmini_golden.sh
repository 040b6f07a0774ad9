#!/usr/bin/env bash
# test_wanmini_golden.sh — the C engine's sampled wan-mini clip equals the PyTorch sampler's for
# the same noise and prompt (tests/reference/make_wanmini_golden.py, float64): the shipped model
# through the shipped defaults (UniPC, 20 steps, shift 3, CFG 5 against the empty prompt), dense.
# Tolerance 1e-4 relative L2: our fp32 vs float64 over 40 forwards, where CFG multiplies the
# conditional/unconditional difference by 5 each step; measured 4.5e-6 (2026-11-27), and a wrong
# op or a wrong sampler coefficient gives > 1e-2.
set -u
B=${1:?build dir}
FX=${AST_FIXTURES:-tests/fixtures}/wanmini
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
prompt=$(sed -n 's/.*"prompt": "\([^"]*\)".*/\1/p' "$FX/golden.json")
want=$(sed -n 's/.*"weights_fnv1a64": "\([0-9a-f]*\)".*/\1/p' "$FX/golden.json")
if ! $B/astraea-generate --model wan-mini --backend cpu --quiet --prompt "$prompt" \
        --init-noise "$FX/golden.safetensors" --out "$T/c.safetensors"; then
    echo "FAIL: astraea-generate failed"; exit 1
fi
if $B/tests/st_tool compare "$T/c.safetensors" x "$FX/golden.safetensors" out 1e-4; then
    echo "ok: wan-mini C clip matches the PyTorch sampler"
else
    echo "FAIL: the C clip differs from tests/fixtures/wanmini/golden.safetensors (made for weights"
    echo "      with FNV-1a $want; if models/wan-mini was retrained, regenerate the golden with"
    echo "      /usr/bin/python3 tests/reference/make_wanmini_golden.py)"
    exit 1
fi
