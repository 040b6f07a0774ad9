"""modelio.py: wan-mini's config, construction, batched text encoding, save/load and batched
sampling, on top of tests/reference/wan_ref.py (WanModel, unipc_sample) and st_io.py.

The architecture fields are fixed (the C engine and loader are written against them); only the
"astraea" block (vocabulary and sampling defaults) comes from data.py / the command line.
"""
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
sys.path.insert(0, HERE)

import wan_ref  # noqa: E402
from st_io import load_safetensors, save_safetensors  # noqa: E402

import data  # noqa: E402

WEIGHTS = "diffusion_pytorch_model.safetensors"

ARCH = {"dim": 128, "ffn_dim": 512, "num_heads": 2, "num_layers": 4, "freq_dim": 256,
        "text_dim": 64, "text_len": 16, "in_dim": 3, "out_dim": 3, "patch_size": [1, 4, 4],
        "eps": 1e-6}


def config_json(steps=20, shift=3.0, guidance=5.0, sampler="unipc"):
    """The config.json the C loader reads (architecture + the "astraea" block)."""
    c = {"_class_name": "WanModel", "model_type": "t2v"}
    c.update(ARCH)
    c["astraea"] = {"model_id": "wan-mini", "vocab": list(data.VOCAB), "frames": data.FRAMES,
                    "height": data.HEIGHT, "width": data.WIDTH, "steps": steps, "shift": shift,
                    "guidance": guidance, "sampler": sampler, "pixel_space": True}
    return c


def ref_config(cj):
    """config.json dict -> wan_ref.WanModel config (vocab read from "astraea", where our
    config.json keeps it, or from the top level)."""
    c = {k: cj[k] for k in ARCH}
    vocab = cj.get("vocab") or cj.get("astraea", {}).get("vocab")
    if vocab:
        c["vocab"] = list(vocab)
    return c


def init_weights(model, seed=0):
    """Official WanModel.init_weights (W model.py): xavier_uniform on every Linear, xavier on the
    flattened patch embedding, N(0, 0.02) on text/time embedding Linears, zero head weight;
    modulation N(0,1)/sqrt(dim) (as constructed officially). wan-mini text encoder: token
    embedding N(0, 1), position embedding N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    dim = model.config["dim"]

    def fill(p, fn):
        with torch.no_grad():
            t = torch.empty(p.shape, dtype=torch.float32)
            fn(t)
            p.copy_(t)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            if name.startswith(("text_embedding", "time_embedding")):
                fill(m.weight, lambda t: t.normal_(0, 0.02, generator=g))
            else:
                fill(m.weight, lambda t: _xavier(t, g))
            torch.nn.init.zeros_(m.bias)
    fill(model.patch_embedding.weight, lambda t: _xavier(t.view(t.shape[0], -1), g))
    torch.nn.init.zeros_(model.patch_embedding.bias)
    torch.nn.init.zeros_(model.head.head.weight)
    for name, p in model.named_parameters():
        if name.endswith("modulation"):
            fill(p, lambda t: t.normal_(0, 1.0 / math.sqrt(dim), generator=g))
    if getattr(model, "text_encoder", None) is not None:
        fill(model.text_encoder.token_embedding, lambda t: t.normal_(0, 1.0, generator=g))
        fill(model.text_encoder.position_embedding, lambda t: t.normal_(0, 0.1, generator=g))
    return model


def _xavier(t, g):
    fan_out, fan_in = t.shape[0], t[0].numel()
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return t.uniform_(-a, a, generator=g)


def build_model(cj, device="cpu", seed=0):
    model = wan_ref.WanModel(ref_config(cj), device=device)
    init_weights(model, seed)
    _fast_context(model)
    return model


def _fast_context(model):
    """WanModel.pad_context loops over the batch; contexts built here are already [B, text_len,
    text_dim] with zero rows after the tokens, so pass them straight through."""
    orig = model.pad_context
    tl, td = model.config["text_len"], model.config["text_dim"]

    def pad(ctx):
        if isinstance(ctx, torch.Tensor) and ctx.dim() == 3 and ctx.shape[1:] == (tl, td):
            return ctx
        return orig(ctx)
    model.pad_context = pad


def encode_ids(model, ids, drop=None):
    """Batched wan-mini text encoder, same rule as wan_ref.TextEncoder: ids [B, text_len] (-1 =
    no token) -> context [B, text_len, text_dim], row r = tok_emb[id_r] + pos_emb[r], exact zeros
    where there is no token. drop [B] bool: whole prompt replaced by the empty prompt (zeros)."""
    te = model.text_encoder
    ids = torch.as_tensor(ids, device=te.token_embedding.device)
    keep = ids >= 0
    if drop is not None:
        keep = keep & ~torch.as_tensor(drop, device=keep.device).view(-1, 1)
    ctx = te.token_embedding[ids.clamp(min=0)] + te.position_embedding.unsqueeze(0)
    return ctx * keep.unsqueeze(-1).to(ctx.dtype)


def encode_prompts(model, prompts):
    """Prompts -> context [B, text_len, text_dim] through the same tokenizer as the C side."""
    ids, _ = data.tokenize_batch(prompts)
    return encode_ids(model, ids)


def save_model(out_dir, state_dict, cj):
    """Writes config.json + diffusion_pytorch_model.safetensors (F32, original key names)."""
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v.detach().float().cpu().contiguous() for k, v in state_dict.items()}
    save_safetensors(os.path.join(out_dir, WEIGHTS), sd, metadata={"format": "pt"})
    tmp = os.path.join(out_dir, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(cj, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, "config.json"))


def load_model(model_dir, device="cpu"):
    """(model in eval mode, config.json dict) from a folder written by save_model."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cj = json.load(f)
    model = wan_ref.WanModel(ref_config(cj), device=device)
    sd = load_safetensors(os.path.join(model_dir, WEIGHTS))
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    _fast_context(model)
    return model.eval(), cj


def attention_fn(device):
    """bf16 SDPA (flash) on CUDA when this torch has it; the plain reference elsewhere."""
    if torch.device(device).type == "cuda" and hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        return wan_ref.attention_sdpa_bf16
    return wan_ref.attention_ref


def noise_for(seeds, shape=(3, data.FRAMES, data.HEIGHT, data.WIDTH)):
    """Initial noise, one CPU generator per seed (independent of batch composition and device)."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.no_grad()
def sample(model, cj, prompts, seeds, steps, shift, guidance, device, sampler="unipc", bf16=None):
    """Batched text-to-clip with CFG (empty prompt = zero context): [B, 3, F, H, W] in model
    units (clamp to [-1, 1] for display). bf16: autocast on CUDA (default), as the official run."""
    bf16 = torch.device(device).type == "cuda" if bf16 is None else bf16
    ctx = encode_prompts(model, prompts)
    neg = torch.zeros_like(ctx)
    attn = attention_fn(device)

    def fn(x, t, c):
        tt = torch.full((x.shape[0],), float(t), device=x.device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            return model(x, tt, c, attn_fn=attn).float()
    x = noise_for(seeds).to(device)
    run = wan_ref.unipc_sample if sampler == "unipc" else wan_ref.euler_sample
    return run(fn, x, steps, shift, guidance, ctx, neg)
