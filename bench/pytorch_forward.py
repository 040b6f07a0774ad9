"""pytorch_forward.py — the PyTorch peer benchmark: one Wan2.1 DiT forward (one CFG branch,
batch 1) executed the way the official code runs it on a GPU, to set Astraea's numbers against.

Execution (wan21.md §1.6, W wan/text2video.py): fp32 weights on the GPU, the forward under
torch.autocast(bfloat16) — GEMMs in bf16, time embedding / modulation / norms / gates / residual in
fp32, RoPE in fp64 — and attention through F.scaled_dot_product_attention on bf16 [B, heads, L, d]
tensors, as the official flash path does. The model is tests/reference/wan_ref.py with random,
non-degenerate weights (timings do not depend on the values).

    python3 bench/pytorch_forward.py --frames 9 --height 60 --width 104     # latent dims: 14,040 tokens
    python3 bench/pytorch_forward.py --frames 21 --height 60 --width 104    # 480p 81 frames: 32,760
    python3 bench/pytorch_forward.py --check                                # tiny config on CPU vs wan_ref

Prints one JSON object on stdout: tokens, pytorch_ms (median forward), sdpa_ms / sdpa_tflops (the
self-attention alone at the same shape, 4·L²·d·heads FLOP), peak_mem_gib
(torch.cuda.max_memory_allocated over the timed forwards, weights included), torch, device, plus the
run's stamp (commit, date, command). Progress goes to stderr. Imports only torch and numpy.
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import wan_ref as W  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sdpa_context(backend):
    """Restricts SDPA to one backend (flash, efficient, cudnn, math); 'auto' leaves torch's choice."""
    if backend == "auto":
        import contextlib
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
             "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
    return sdpa_kernel(getattr(SDPBackend, names[backend]))


def time_ms(fn, warmup, repeats, device):
    """Median wall time of fn() in ms: CUDA events on a GPU, perf_counter on the CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], times


def forward_flop(c, tokens):
    """FLOP of one forward (GEMMs and attention; 2 per multiply-add), for an achieved-TFLOP/s figure."""
    d, fd, L, lt = c["dim"], c["ffn_dim"], tokens, c["text_len"]
    per_block = (2 * L * d * d * 4            # self q, k, v, o
                 + 4 * L * L * d              # self attention QK^T and PV
                 + 2 * L * d * d * 2          # cross q, o
                 + 2 * lt * d * d * 2         # cross k, v over the padded context
                 + 4 * L * lt * d             # cross attention
                 + 2 * L * d * fd * 2)        # FFN
    patch = math.prod(c["patch_size"])
    other = (2 * L * c["in_dim"] * patch * d + 2 * lt * (c["text_dim"] * d + d * d)
             + 2 * L * d * c["out_dim"] * patch)
    return c["num_layers"] * per_block + other


def stamp(argv):
    # the commit measured: ASTRAEA_COMMIT when the caller names it (bench/device.sh does: the
    # device's copy of the tree may carry another git HEAD, or none)
    commit = os.environ.get("ASTRAEA_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short=12", "HEAD"],
                                    capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
        except Exception:
            commit = "unknown"
    return {"commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python3", os.path.relpath(os.path.abspath(__file__))] + argv)}


def make_inputs(c, frames, height, width, ctx_rows, device, seed=0):
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    x = torch.randn(1, c["in_dim"], frames, height, width, generator=g, device=device)
    ctx = torch.randn(ctx_rows, c["text_dim"], generator=g, device=device)
    return x, torch.tensor([937], device=device), ctx


def run_bench(args):
    if not torch.cuda.is_available():
        raise SystemExit("pytorch_forward: error: no CUDA device (use --check for the CPU self-test)")
    dev = torch.device("cuda", args.gpu)
    torch.cuda.set_device(dev)
    c = dict(W.CONFIG_14B if args.model == "14b" else W.CONFIG_1_3B)
    if args.layers:
        c["num_layers"] = args.layers
    pt, ph, pw = c["patch_size"]
    if args.frames % pt or args.height % ph or args.width % pw:
        raise SystemExit(f"pytorch_forward: error: latent {args.frames}x{args.height}x{args.width} "
                         f"is not a multiple of the patch {c['patch_size']}")
    tokens = (args.frames // pt) * (args.height // ph) * (args.width // pw)
    heads, hd = c["num_heads"], c["dim"] // c["num_heads"]
    log(f"building Wan {args.model} ({c['num_layers']} layers) on {torch.cuda.get_device_name(dev)}, "
        f"{tokens} tokens")
    model = W.WanModel(c, device=dev, dtype=torch.float32, attn_fn=W.attention_sdpa_bf16)
    W.init_weights_(model, seed=0, use_numpy=False)
    model.eval()
    x, t, ctx = make_inputs(c, args.frames, args.height, args.width, args.context_rows, dev)

    def fwd():
        with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            return model(x, t, ctx)

    with sdpa_context(args.sdpa_backend):
        out = fwd()
        if not torch.isfinite(out).all():
            raise SystemExit("pytorch_forward: error: the forward produced non-finite values")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
        fwd_ms, fwd_all = time_ms(fwd, args.warmup, args.repeats, dev)
        peak = torch.cuda.max_memory_allocated(dev) / 2 ** 30
        # SDPA alone: self-attention of this token count, bf16 [1, heads, L, d]
        g = torch.Generator(device=dev)
        g.manual_seed(1)
        q, k, v = (torch.randn(1, heads, tokens, hd, generator=g, device=dev, dtype=torch.bfloat16)
                   for _ in range(3))
        with torch.inference_mode():
            sdpa_ms, _ = time_ms(lambda: F.scaled_dot_product_attention(q, k, v), args.warmup,
                                 max(args.repeats, 10), dev)
    flop = forward_flop(c, tokens)
    res = {"tokens": tokens, "pytorch_ms": round(fwd_ms, 3), "sdpa_ms": round(sdpa_ms, 3),
           "sdpa_tflops": round(4 * tokens ** 2 * hd * heads / (sdpa_ms * 1e-3) / 1e12, 1),
           "peak_mem_gib": round(peak, 2), "torch": torch.__version__,
           "device": torch.cuda.get_device_name(dev),
           "model": args.model, "layers": c["num_layers"],
           "latent": [c["in_dim"], args.frames, args.height, args.width],
           "forward_tflop": round(flop / 1e12, 2),
           "forward_tflops": round(flop / (fwd_ms * 1e-3) / 1e12, 1),
           "forward_ms_all": [round(v, 2) for v in fwd_all], "sdpa_backend": args.sdpa_backend,
           "cuda": torch.version.cuda}
    res.update(stamp(sys.argv[1:]))
    return res


def run_check(args):
    """CPU self-test: the benchmark's execution path (autocast bf16 + SDPA hook) against the plain
    fp32 wan_ref forward on the tiny config, and the fp32 SDPA path against it tightly."""
    torch.manual_seed(0)
    c = dict(W.CONFIG_TINY)
    dev = torch.device("cpu")
    model = W.init_weights_(W.WanModel(c), seed=0)
    x, t, ctx = make_inputs(c, 3, 8, 12, 11, dev)
    with torch.no_grad():
        ref = model.double()(x, t, ctx).float()
        model.float()
        fp32 = model(x, t, ctx)
        fp32_sdpa = model(x, t, ctx, attn_fn=(F.scaled_dot_product_attention if hasattr(
            F, "scaled_dot_product_attention") else W.attention_ref))
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            bf = model(x, t, ctx, attn_fn=W.attention_sdpa_bf16)
    e32, e32s, ebf = W.rel_l2(fp32, ref), W.rel_l2(fp32_sdpa, ref), W.rel_l2(bf.float(), ref)
    ms, _ = time_ms(lambda: model(x, t, ctx, attn_fn=W.attention_sdpa_bf16), 1, 3, dev)
    tokens = 3 * 4 * 6
    # FLOP formula against a direct count of this tiny config's matmuls (per block)
    L, d, lt, fd = tokens, 128, 16, 256
    direct = 2 * (4 * L * d * d + 2 * L * L * d + 2 * L * d * d + 2 * lt * d * d + 2 * L * lt * d + 2 * L * d * fd)
    flop_ok = forward_flop(c, tokens) - 2 * (L * 64 * d + lt * (64 * d + d * d) + L * d * 64) == 2 * direct
    ok = e32 < 1e-5 and e32s < 1e-5 and ebf < 3e-2 and flop_ok and bf.dtype == torch.float32
    res = {"check": "pass" if ok else "FAIL", "tokens": tokens,
           "rel_l2_fp32_vs_fp64": e32, "rel_l2_fp32_sdpa_vs_fp64": e32s,
           "rel_l2_autocast_bf16_vs_fp64": ebf, "flop_formula": flop_ok,
           "cpu_ms": round(ms, 2), "torch": torch.__version__, "device": "cpu",
           "tolerances": "fp32 1e-5 (fp32 rounding), autocast bf16 3e-2 (bf16 GEMM inputs, ~8 bits)"}
    res.update(stamp(sys.argv[1:]))
    return res


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer benchmark of one Wan2.1 forward (see module doc)")
    ap.add_argument("--frames", type=int, default=21, help="latent frames F (21 = 81 video frames)")
    ap.add_argument("--height", type=int, default=60, help="latent height H (60 = 480 px)")
    ap.add_argument("--width", type=int, default=104, help="latent width W (104 = 832 px)")
    ap.add_argument("--model", choices=("1.3b", "14b"), default="1.3b")
    ap.add_argument("--layers", type=int, default=0, help="override num_layers (0 = the model's)")
    ap.add_argument("--context-rows", type=int, default=64, help="real prompt rows before padding to 512")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sdpa-backend", choices=("auto", "flash", "efficient", "cudnn", "math"), default="auto")
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="CPU self-test on the tiny config, no GPU needed")
    args = ap.parse_args()
    res = run_check(args) if args.check else run_bench(args)
    print(json.dumps(res))
    return 0 if res.get("check", "pass") == "pass" else 1


if __name__ == "__main__":
    raise SystemExit(main())
