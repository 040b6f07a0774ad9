"""make_fixtures.py — writes the golden fixtures of the tiny synthetic Wan2.1 model that the C
engine is tested against (tests/fixtures/tiny/, described in tests/reference/README.md).

    /usr/bin/python3 tests/reference/make_fixtures.py [--out DIR]

Deterministic: weights and inputs come from numpy RandomState streams (stable across numpy
versions); goldens are computed with the model cast to float64 (see README: why, and the
tolerances). Prints every file it wrote, the sanity diagnostics, and exits non-zero if a check
fails (a path that does not change the output, or a written folder that does not reload to its
golden).
"""
import argparse
import copy
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref as W  # noqa: E402
from st_io import load_safetensors, save_safetensors  # noqa: E402

CFG = W.CONFIG_TINY
WEIGHT_SEED = 2100
LATENT = (16, 3, 8, 12)        # [C, F, H, W] latent: 3 × 4 × 6 = 72 tokens
T_FORWARD = 937
CTX_ROWS, NEG_ROWS = 11, 7     # fewer than text_len = 16, so the zero padding matters
STEPS, SHIFT, GUIDANCE = 6, 5.0, 5.0
ST_META = {"format": "pt"}
CKPT = "diffusion_pytorch_model.safetensors"


def randn(seed, shape):
    return torch.from_numpy(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def forward(model, x, t, ctx):
    """One forward of a [C,F,H,W] latent, batch 1, returns [C,F,H,W]."""
    with torch.no_grad():
        return model(x.unsqueeze(0).to(model.compute_dtype), torch.tensor([t]),
                     ctx.to(model.compute_dtype))[0]


def forward_debug(model, x, t, ctx):
    """Intermediate tensors of one forward (for bisecting a C mismatch), via forward hooks."""
    got = {}

    def keep(name, fn=lambda o: o):
        return lambda mod, inp, out: got.__setitem__(name, fn(out)[0].detach())

    hs = [model.patch_embedding.register_forward_hook(keep("x_embed", lambda o: o.flatten(2).transpose(1, 2))),
          model.time_embedding.register_forward_hook(keep("e")),
          model.time_projection.register_forward_hook(keep("e0", lambda o: o.unflatten(1, (6, CFG["dim"])))),
          model.text_embedding.register_forward_hook(keep("context_emb")),
          model.head.register_forward_hook(keep("head_out"))]
    for i, b in enumerate(model.blocks):
        hs.append(b.register_forward_hook(keep(f"x_block{i}")))
    try:
        out = forward(model, x, t, ctx)
    finally:
        for h in hs:
            h.remove()
    got["out"] = out
    return {k: v.float().contiguous() for k, v in got.items()}


def sample(model, kind, noise, ctx, neg):
    fn = W.model_fn_of(model)
    run = W.unipc_sample if kind == "unipc" else W.euler_sample
    x, xs, vs = run(fn, noise.to(model.compute_dtype), STEPS, SHIFT, GUIDANCE,
                    ctx.to(model.compute_dtype), neg.to(model.compute_dtype), return_steps=True)
    out = {"x": x.float()}
    for i, (xi, vi) in enumerate(zip(xs, vs)):
        out[f"x_step{i}"] = xi.float()
        out[f"v_step{i}"] = vi.float()
    return out


def cast_sd(sd, dtype):
    return {k: v.detach().to(dtype).contiguous() for k, v in sd.items()}


def model_from(sd, cfg=CFG):
    m = W.WanModel(cfg, dtype=torch.float64)
    m.load_state_dict({k: v.to(torch.float64) for k, v in sd.items()})
    return m


def sensitivity(md, x, ctx, base):
    """Relative change of the output when one path is altered: every one must matter."""
    res = {}

    def alt(name, model=md, t=T_FORWARD, c=ctx):
        res[name] = W.rel_l2(forward(model, x, t, c), base)

    alt("timestep 937 -> 500", t=500)
    alt("other context", c=randn(99, (CTX_ROWS, CFG["text_dim"])))
    alt("context row 10 changed", c=torch.cat([ctx[:10], randn(98, (1, CFG["text_dim"]))]))
    m2 = copy.deepcopy(md)
    m2.config = dict(md.config, text_len=CTX_ROWS)
    alt("no zero-padding rows (text_len 16 -> 11)", model=m2)
    saved = W.rope_token_angles
    W.rope_token_angles = lambda hd, grid, device=None: torch.zeros(
        grid[0] * grid[1] * grid[2], hd // 2, dtype=torch.float64, device=device)
    try:
        alt("RoPE off")
    finally:
        W.rope_token_angles = saved
    # plausible porting mistakes, each must move the output well past the C tolerance (1e-4)
    hd = CFG["dim"] // CFG["num_heads"]

    def angles_global_d(head_dim, max_pos=W.ROPE_MAX_POS, device=None):  # one D for all axes
        out = []
        for d in W.rope_axis_dims(head_dim):
            inv = 1.0 / torch.pow(10000.0, torch.arange(0, d, 2, dtype=torch.float64).div(head_dim))
            out.append(torch.outer(torch.arange(max_pos, dtype=torch.float64), inv))
        return out

    def sin_first(dim, position):
        e = saved_sin(dim, position)
        return torch.cat([e[:, dim // 2:], e[:, :dim // 2]], dim=1)

    def rms_per_head(self, x):
        xc = x.to(self.weight.dtype)
        h = xc.unflatten(-1, (CFG["num_heads"], hd))
        y = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
        return y.type_as(x) * self.weight

    saved_ang, saved_sin, saved_rms = W.rope_angles, W.sinusoidal_embedding_1d, W.WanRMSNorm.forward
    for what, attr, obj, repl in (("RoPE: head_dim instead of axis D in the exponent", "rope_angles", W, angles_global_d),
                                  ("sinusoid sin first", "sinusoidal_embedding_1d", W, sin_first),
                                  ("RMSNorm per head instead of across heads", "forward", W.WanRMSNorm, rms_per_head)):
        old = getattr(obj, attr)
        setattr(obj, attr, repl)
        try:
            alt(what)
        finally:
            setattr(obj, attr, old)
    saved_tok = W.rope_token_angles

    def swapped_hw(head_dim, grid, device=None):  # h-axis columns driven by j, w-axis by i
        fr, hh, ww = grid
        at, ah, aw = W.rope_angles(head_dim, device=device)
        a = torch.cat([at[:fr].view(fr, 1, 1, -1).expand(fr, hh, ww, -1),
                       ah[:ww].view(1, 1, ww, -1).expand(fr, hh, ww, -1),
                       aw[:hh].view(1, hh, 1, -1).expand(fr, hh, ww, -1)], dim=-1)
        return a.reshape(fr * hh * ww, -1)

    W.rope_token_angles = swapped_hw
    try:
        alt("RoPE: h and w positions swapped")
    finally:
        W.rope_token_angles = saved_tok
    m4 = copy.deepcopy(md)
    for mod in m4.modules():
        if isinstance(mod, torch.nn.GELU):
            mod.approximate = "none"
    alt("GELU exact instead of tanh", model=m4)
    for what, path in (("head.modulation", "head.modulation"), ("block 1 self_attn.o", "blocks.1.self_attn.o.weight"),
                       ("block 1 cross_attn.o", "blocks.1.cross_attn.o.weight"),
                       ("block 1 ffn.2", "blocks.1.ffn.2.weight"), ("block 0 modulation", "blocks.0.modulation"),
                       ("block 0 norm3.bias", "blocks.0.norm3.bias"),
                       ("block 0 self_attn.norm_k", "blocks.0.self_attn.norm_k.weight"),
                       ("block 0 cross_attn.norm_q", "blocks.0.cross_attn.norm_q.weight")):
        m3 = copy.deepcopy(md)
        with torch.no_grad():
            p = dict(m3.named_parameters())[path]
            p.copy_(torch.ones_like(p) if "norm_" in path else torch.zeros_like(p))
        alt(f"{what} {'= 1' if 'norm_' in path else 'zeroed'}", model=m3)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "fixtures", "tiny")))
    args = ap.parse_args()
    out = args.out
    torch.set_num_threads(min(8, torch.get_num_threads()))
    fails = []

    def check(name, ok, detail=""):
        print(f"  {'ok  ' if ok else 'FAIL'} {name} {detail}")
        if not ok:
            fails.append(name)

    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)

    # --- weights: f32 master, bf16 and f16 roundings of it
    model = W.init_weights_(W.WanModel(CFG), seed=WEIGHT_SEED)
    sd32 = cast_sd(model.state_dict(), torch.float32)
    sd_bf16 = cast_sd(sd32, torch.bfloat16)
    sd_f16 = cast_sd(sd32, torch.float16)
    ocfg = W.original_config(CFG)
    dcfg = dict(W.diffusers_config(CFG), text_len=CFG["text_len"])
    for sub, sd in (("orig_f32", sd32), ("orig_bf16", sd_bf16)):
        os.makedirs(os.path.join(out, sub))
        write_json(os.path.join(out, sub, "config.json"), ocfg)
        save_safetensors(os.path.join(out, sub, CKPT), sd, ST_META)
    # diffusers: renamed keys, BF16 (same values as orig_bf16), sharded in two files + index
    os.makedirs(os.path.join(out, "diffusers"))
    write_json(os.path.join(out, "diffusers", "config.json"), dcfg)
    dsd = W.to_diffusers(sd_bf16)
    names = sorted(dsd)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map, total = {}, 0
    for i, part in enumerate(shards):
        fname = f"diffusion_pytorch_model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_safetensors(os.path.join(out, "diffusers", fname), {k: dsd[k] for k in part}, ST_META)
        for k in part:
            weight_map[k] = fname
            total += dsd[k].numel() * dsd[k].element_size()
    write_json(os.path.join(out, "diffusers", CKPT + ".index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})
    # prefixed: ComfyUI-style single file, F16
    os.makedirs(os.path.join(out, "prefixed"))
    write_json(os.path.join(out, "prefixed", "config.json"), ocfg)
    save_safetensors(os.path.join(out, "prefixed", "wan2.1_t2v_tiny_fp16.safetensors"),
                     W.add_prefix(sd_f16), ST_META)

    # --- forward goldens (float64 compute)
    x = randn(1, LATENT)
    ctx = randn(2, (CTX_ROWS, CFG["text_dim"]))
    save_safetensors(os.path.join(out, "forward_in.safetensors"),
                     {"x": x, "t": torch.tensor([T_FORWARD], dtype=torch.int64), "context": ctx},
                     {"note": "one sample, batch dim dropped; t is the integer model timestep"})
    md = model_from(sd32)
    dbg = forward_debug(md, x, T_FORWARD, ctx)
    gold = dbg["out"]
    save_safetensors(os.path.join(out, "forward_out.safetensors"), {"out": gold},
                     {"weights": "orig_f32", "compute": "float64 (model.double()), stored F32"})
    save_safetensors(os.path.join(out, "forward_debug.safetensors"), dbg,
                     {"weights": "orig_f32", "compute": "float64, stored F32",
                      "x_embed": "patch-embedded tokens [L, dim]", "e": "time_embedding output [dim]",
                      "e0": "time_projection output [6, dim]", "context_emb": "text_embedding output "
                      "[text_len, dim]", "x_block{i}": "residual stream after block i [L, dim]",
                      "head_out": "head output before unpatchify [L, 64]", "out": "= forward_out"})
    goldens = {"orig_f32": gold}
    for name, sd, sub in (("forward_out_bf16", sd_bf16, "orig_bf16 and diffusers"),
                          ("forward_out_f16", sd_f16, "prefixed")):
        o = forward(model_from(sd), x, T_FORWARD, ctx).float()
        save_safetensors(os.path.join(out, name + ".safetensors"), {"out": o},
                         {"weights": sub, "compute": "float64 (weights upcast), stored F32"})
        goldens[name] = o

    # --- sampler goldens (F32 weights, float64 compute, float32 sigmas and scalar coefficients)
    noise = randn(3, LATENT)
    sctx = randn(4, (CTX_ROWS, CFG["text_dim"]))
    sneg = randn(5, (NEG_ROWS, CFG["text_dim"]))
    sig, ts = W.schedule(STEPS, SHIFT)
    meta = {"steps": str(STEPS), "shift": str(SHIFT), "guidance": str(GUIDANCE), "weights": "orig_f32"}
    save_safetensors(os.path.join(out, "sample_in.safetensors"),
                     {"x": noise, "context": sctx, "neg_context": sneg,
                      "steps": torch.tensor([STEPS], dtype=torch.int64),
                      "shift": torch.tensor([SHIFT], dtype=torch.float32),
                      "guidance": torch.tensor([GUIDANCE], dtype=torch.float32),
                      "sigmas": sig, "timesteps": ts}, meta)
    smeta = dict(meta, compute="float64 model and latents, float32 sigmas/coefficients, stored F32",
                 x_step="latent after step i (x_step5 = x)", v_step="CFG velocity of step i")
    su = sample(md, "unipc", noise, sctx, sneg)
    save_safetensors(os.path.join(out, "sample_out.safetensors"), su, dict(smeta, sampler="unipc"))
    se = sample(md, "euler", noise, sctx, sneg)
    save_safetensors(os.path.join(out, "sample_euler_out.safetensors"), se, dict(smeta, sampler="euler"))

    # --- schedules
    scheds = []
    for n, s in ((50, 5.0), (6, 5.0), (50, 3.0), (30, 8.0)):
        sg, tt = W.schedule(n, s)
        scheds.append({"steps": n, "shift": s, "sigmas": [float(v) for v in sg.tolist()],
                       "timesteps": [int(v) for v in tt.tolist()],
                       "note": "wan21.md §3.2: sigmas are the float32 values (steps+1, last 0) "
                               "written as doubles; timesteps = int64(trunc(sigma'*1000)) in float64"})
    write_json(os.path.join(out, "schedule.json"), scheds)  # a JSON array of cases

    # --- checks and diagnostics
    print("checks:")
    check("output is O(1)", 0.3 < gold.std().item() < 5, f"std {gold.std().item():.3f}")
    # Each altered path must move the output 20x past the C tolerance (1e-4). Exception: exact
    # GELU differs from the tanh form by only ~1e-4 relative in any weights, so that mistake is
    # only visible to a bound of 1e-5 (README).
    for name, r in sensitivity(md, x, ctx, gold).items():
        need = 4e-5 if name.startswith("GELU") else 2e-3
        check(f"path matters: {name}", r > need, f"rel change {r:.2e} (need > {need:.0e})")
    o32 = forward(model, x, T_FORWARD, ctx)
    e32 = W.rel_l2(o32, gold)
    check("torch fp32 forward vs float64 golden", e32 < 1e-5, f"rel L2 {e32:.1e}")
    check("bf16-weight golden differs from f32 golden", W.rel_l2(goldens["forward_out_bf16"], gold) > 1e-4,
          f"rel L2 {W.rel_l2(goldens['forward_out_bf16'], gold):.1e}")
    check("f16-weight golden differs from f32 golden", W.rel_l2(goldens["forward_out_f16"], gold) > 1e-5,
          f"rel L2 {W.rel_l2(goldens['forward_out_f16'], gold):.1e}")
    su32 = sample(model, "unipc", noise, sctx, sneg)
    se32 = sample(model, "euler", noise, sctx, sneg)
    check("fp32 UniPC vs float64 golden", W.rel_l2(su32["x"], su["x"]) < 1e-5,
          f"rel L2 {W.rel_l2(su32['x'], su['x']):.1e}")
    check("fp32 Euler vs float64 golden", W.rel_l2(se32["x"], se["x"]) < 1e-5,
          f"rel L2 {W.rel_l2(se32['x'], se['x']):.1e}")
    check("UniPC and Euler agree on step 0", W.rel_l2(su["x_step0"], se["x_step0"]) < 1e-6)
    check("UniPC and Euler differ at the end", W.rel_l2(su["x"], se["x"]) > 1e-2,
          f"rel L2 {W.rel_l2(su['x'], se['x']):.3f}")
    check("sample is O(1)", 0.3 < su["x"].std().item() < 20, f"std {su['x'].std().item():.3f}")
    t50 = scheds[0]["timesteps"]
    check("schedule N=50 s=5", t50[:6] == [999, 995, 991, 987, 982, 978]
          and t50[-6:] == [405, 356, 302, 241, 172, 92])
    # every written folder reloads (through st_io and the loader rules) to its golden, bit-exactly
    want = {"orig_f32": gold, "orig_bf16": goldens["forward_out_bf16"],
            "diffusers": goldens["forward_out_bf16"], "prefixed": goldens["forward_out_f16"]}
    fin = load_safetensors(os.path.join(out, "forward_in.safetensors"))
    for sub, g in want.items():
        m, style = W.load_model(os.path.join(out, sub), dtype=torch.float64)
        o = forward(m, fin["x"], int(fin["t"][0]), fin["context"]).float()
        check(f"{sub}/ reloads ({style} keys) to its golden", torch.equal(o, g))

    print(f"wrote {out}:")
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for f in sorted(files):
            p = os.path.join(root, f)
            sz = os.path.getsize(p)
            total += sz
            print(f"  {os.path.relpath(p, out):60s} {sz:>9,d} B")
    print(f"  total {total:,d} B")
    if fails:
        print(f"{len(fails)} check(s) failed: {', '.join(fails)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
