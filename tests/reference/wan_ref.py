"""wan_ref.py — an independent PyTorch reference of the Wan2.1 T2V DiT and its samplers, written
from ../shared/docs/wan21.md alone (§1 forward, §2 checkpoint keys, §3 samplers). It produces the
golden fixtures the C engine is tested against (tests/reference/make_fixtures.py) and is the model
the PyTorch peer benchmark runs (bench/pytorch_forward.py).

Portable: torch >= 1.13 (CPU test machine) and torch 2.x with CUDA (GPU machine); numpy only for
the schedule (to mirror numpy.linspace exactly) and seeded fixture weights.

Precision follows the official code path: the compute dtype is the dtype of the parameters
(float32 normally; float64 after model.double(), which is how the goldens are made). Where the
official code calls .float() this code casts to the compute dtype; time embedding, modulation,
gates, head and the residual stream run with autocast disabled; RoPE is applied in float64.
Run under torch.autocast(bfloat16) the model behaves like the official GPU run (§1.6).

    model = WanModel(cfg); out = model(x [B,C,F,H,W], t [B], context [B,L,text_dim])
    sigmas, timesteps = schedule(steps, shift)
    x0 = unipc_sample(model_fn, noise, steps, shift, guidance, ctx, neg_ctx)
"""
import glob
import json
import math
import os
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

ROPE_MAX_POS = 1024  # rows of the RoPE table (M: rope_params(1024, ...))

# ------------------------------------------------------------------------------------------------
# Configurations (§1.1). Keys are the reference's own; patch_size is (t, h, w).

CONFIG_1_3B = dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, freq_dim=256, text_dim=4096,
                   text_len=512, in_dim=16, out_dim=16, patch_size=(1, 2, 2), eps=1e-6)
CONFIG_14B = dict(CONFIG_1_3B, dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)
# The fixture model (tests/fixtures/tiny): 2 heads of 64.
CONFIG_TINY = dict(dim=128, ffn_dim=256, num_heads=2, num_layers=2, freq_dim=256, text_dim=64,
                   text_len=16, in_dim=16, out_dim=16, patch_size=(1, 2, 2), eps=1e-6)

_CONFIG_DEFAULTS = dict(freq_dim=256, text_dim=4096, text_len=512, in_dim=16, out_dim=16,
                        patch_size=(1, 2, 2), eps=1e-6)


def normalize_config(cfg):
    """Fills defaults and checks the numbers the forward relies on."""
    c = dict(_CONFIG_DEFAULTS)
    c.update(cfg)
    c["patch_size"] = tuple(int(p) for p in c["patch_size"])
    for k in ("dim", "ffn_dim", "num_heads", "num_layers", "freq_dim", "text_dim", "text_len",
              "in_dim", "out_dim"):
        c[k] = int(c[k])
    c["eps"] = float(c["eps"])
    if len(c["patch_size"]) != 3:
        raise ValueError(f"patch_size must have 3 entries (t,h,w), got {c['patch_size']}")
    if c["dim"] % c["num_heads"]:
        raise ValueError(f"dim {c['dim']} is not a multiple of num_heads {c['num_heads']}")
    hd = c["dim"] // c["num_heads"]
    if hd % 2 or hd < 6:
        raise ValueError(f"head_dim {hd} must be even and >= 6 for the 3-axis RoPE")
    if c["freq_dim"] % 2:
        raise ValueError(f"freq_dim {c['freq_dim']} must be even")
    return c


# ------------------------------------------------------------------------------------------------
# Small pieces (§1.3)

def _fp32_region(t):
    """Autocast off: the official code's `amp.autocast(dtype=torch.float32)` regions."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def sinusoidal_embedding_1d(dim, position):
    """[len(position), dim] float64: cos(φ_k) for k < dim/2, then sin(φ_k); φ_k = p·10000^(−k/half)."""
    half = dim // 2
    position = position.to(torch.float64)
    freqs = torch.pow(10000, -torch.arange(half, device=position.device).to(position).div(half))
    sinusoid = torch.outer(position, freqs)
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def rope_axis_dims(head_dim):
    """(d_t, d_h, d_w): d_t = d − 4⌊d/6⌋, d_h = d_w = 2⌊d/6⌋ (44, 42, 42 for d = 128)."""
    k = head_dim // 6
    return head_dim - 4 * k, 2 * k, 2 * k


def rope_angles(head_dim, max_pos=ROPE_MAX_POS, device=None):
    """Three float64 tables [max_pos, D/2] of θ_{p,j} = p·10000^(−2j/D), each axis with its own D."""
    out = []
    for d in rope_axis_dims(head_dim):
        inv = 1.0 / torch.pow(10000.0, torch.arange(0, d, 2, dtype=torch.float64, device=device).div(d))
        out.append(torch.outer(torch.arange(max_pos, dtype=torch.float64, device=device), inv))
    return out


def rope_token_angles(head_dim, grid, device=None):
    """[L, head_dim/2] float64 angles for tokens n = (f·H' + i)·W' + j: columns of the t axis use
    f, then h columns use i, then w columns use j."""
    fr, hh, ww = grid
    if max(grid) > ROPE_MAX_POS:
        raise ValueError(f"patch grid {grid} exceeds the RoPE table ({ROPE_MAX_POS} positions)")
    at, ah, aw = rope_angles(head_dim, device=device)
    a = torch.cat([at[:fr].view(fr, 1, 1, -1).expand(fr, hh, ww, -1),
                   ah[:hh].view(1, hh, 1, -1).expand(fr, hh, ww, -1),
                   aw[:ww].view(1, 1, ww, -1).expand(fr, hh, ww, -1)], dim=-1)
    return a.reshape(fr * hh * ww, -1)


def rope_apply(x, angles, dtype=torch.float64):
    """x [B, L, heads, d]; pairs (2m, 2m+1) rotated by angle[n, m], computed in `dtype`: float64
    (the default, as the official rope_apply) or float32 (the trainer's faster variant, rounding
    ~1e-7 relative); returns float32 (or float64 for a float64 input). angles: [L, d/2] float64, or
    its precomputed (cos, sin) pair (the tables, like x, are cast to `dtype`)."""
    b, s, n, d = x.shape
    cos, sin = angles if isinstance(angles, tuple) else (torch.cos(angles), torch.sin(angles))
    xd = x.to(dtype).reshape(b, s, n, d // 2, 2)
    x0, x1 = xd[..., 0], xd[..., 1]
    cos, sin = cos.to(dtype).view(1, s, 1, d // 2), sin.to(dtype).view(1, s, 1, d // 2)
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).reshape(b, s, n, d)
    return out.to(torch.promote_types(x.dtype, torch.float32))


def attention_ref(q, k, v, chunk_bytes=1 << 28):
    """Plain softmax attention, q [B,n,Lq,d], k/v [B,n,Lk,d], scale 1/√d, no mask. Computed in the
    promoted dtype of q, k, v; queries are processed in chunks so the score matrix stays small."""
    dt = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    b, n, lq, d = q.shape
    scale = 1.0 / math.sqrt(d)
    per_row = b * n * k.shape[2] * q.element_size() * 2
    step = max(1, min(lq, chunk_bytes // max(per_row, 1)))
    outs = []
    for s in range(0, lq, step):
        w = torch.softmax(torch.matmul(q[:, :, s:s + step], k.transpose(-1, -2)) * scale, dim=-1)
        outs.append(torch.matmul(w.to(v.dtype), v))
    return torch.cat(outs, dim=2)


def attention_sdpa_bf16(q, k, v):
    """The official GPU path: bf16 q/k/v [B, heads, L, d] through scaled_dot_product_attention
    (flash on Hopper), as flash_attention(half(q), half(k), half(v)) does."""
    bf = torch.bfloat16
    if not hasattr(F, "scaled_dot_product_attention"):  # torch < 2.0: same math, bf16 inputs
        return attention_ref(q.to(bf), k.to(bf), v.to(bf))
    return F.scaled_dot_product_attention(q.to(bf), k.to(bf), v.to(bf))


# ------------------------------------------------------------------------------------------------
# Modules (§1.4, §1.5). Parameter names are the original checkpoint keys (§2.1).

class WanRMSNorm(nn.Module):
    """y = x·rsqrt(mean(x²) + eps)·w over the full dim (all heads)."""

    def __init__(self, dim, eps, **kw):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, **kw))

    def forward(self, x):
        xc = x.to(self.weight.dtype)
        y = xc * torch.rsqrt(xc.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


class WanLayerNorm(nn.Module):
    """LayerNorm over the last dim, biased variance, optional affine; statistics in the compute
    dtype (given by `ref`'s dtype when there is no weight)."""

    def __init__(self, dim, eps, affine=False, **kw):
        super().__init__()
        self.dim, self.eps = dim, eps
        if affine:
            self.weight = nn.Parameter(torch.ones(dim, **kw))
            self.bias = nn.Parameter(torch.zeros(dim, **kw))
        else:
            self.weight = self.bias = None

    def forward(self, x, cdt=None):
        cdt = self.weight.dtype if self.weight is not None else (cdt or torch.float32)
        return F.layer_norm(x.to(cdt), (self.dim,), self.weight, self.bias, self.eps).type_as(x)


class WanAttention(nn.Module):
    """self_attn / cross_attn: q,k = RMSNorm(W·x + b) over the full dim, v = W·x + b, optional
    RoPE on q and k, softmax attention per head (scale 1/√head_dim), then o."""

    def __init__(self, dim, num_heads, eps, **kw):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim, **kw)
        self.k = nn.Linear(dim, dim, **kw)
        self.v = nn.Linear(dim, dim, **kw)
        self.o = nn.Linear(dim, dim, **kw)
        self.norm_q = WanRMSNorm(dim, eps, **kw)
        self.norm_k = WanRMSNorm(dim, eps, **kw)
        self.rope_fn = rope_apply  # the rotation (a trainer may set a faster equivalent)

    def forward(self, x, kv, attn_fn, angles=None):
        b, s, n, d = x.shape[0], x.shape[1], self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(b, s, n, d)
        k = self.norm_k(self.k(kv)).view(b, kv.shape[1], n, d)
        v = self.v(kv).view(b, kv.shape[1], n, d)
        if angles is not None:
            q, k = self.rope_fn(q, angles), self.rope_fn(k, angles)
        o = attn_fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        o = o.to(q.dtype).transpose(1, 2).reshape(b, s, n * d)
        return self.o(o)


class WanAttentionBlock(nn.Module):
    def __init__(self, c, **kw):
        super().__init__()
        dim = c["dim"]
        self.norm1 = WanLayerNorm(dim, c["eps"])
        self.self_attn = WanAttention(dim, c["num_heads"], c["eps"], **kw)
        self.norm3 = WanLayerNorm(dim, c["eps"], affine=True, **kw)
        self.cross_attn = WanAttention(dim, c["num_heads"], c["eps"], **kw)
        self.norm2 = WanLayerNorm(dim, c["eps"])
        self.ffn = nn.Sequential(nn.Linear(dim, c["ffn_dim"], **kw), nn.GELU(approximate="tanh"),
                                 nn.Linear(c["ffn_dim"], dim, **kw))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim, **kw))

    def forward(self, x, e0, angles, context, attn_fn):
        cdt = self.modulation.dtype
        with _fp32_region(x):
            e = (self.modulation + e0).chunk(6, dim=1)  # shift, scale, gate (msa); shift, scale, gate (ffn)
        h = self.norm1(x, cdt).to(cdt) * (1 + e[1]) + e[0]
        y = self.self_attn(h, h, attn_fn, angles)
        with _fp32_region(x):
            x = x + y * e[2]
        x = x + self.cross_attn(self.norm3(x), context, attn_fn)
        y = self.ffn(self.norm2(x, cdt).to(cdt) * (1 + e[4]) + e[3])
        with _fp32_region(x):
            x = x + y * e[5]
        return x


class WanHead(nn.Module):
    def __init__(self, c, **kw):
        super().__init__()
        dim = c["dim"]
        self.norm = WanLayerNorm(dim, c["eps"])
        self.head = nn.Linear(dim, math.prod(c["patch_size"]) * c["out_dim"], **kw)
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim, **kw))

    def forward(self, x, e):
        cdt = self.modulation.dtype
        with _fp32_region(x):
            shift, scale = (self.modulation + e.unsqueeze(1)).chunk(2, dim=1)  # e, not e0; no SiLU
            return self.head(self.norm(x, cdt) * (1 + scale) + shift)


class TextEncoder(nn.Module):
    """wan-mini's text encoder: context row r = token_embedding[id_r] + position_embedding[r] for
    the prompt's tokens, exact zero rows after them up to text_len."""

    def __init__(self, vocab_size, text_len, text_dim, **kw):
        super().__init__()
        self.token_embedding = nn.Parameter(torch.zeros(vocab_size, text_dim, **kw))
        self.position_embedding = nn.Parameter(torch.zeros(text_len, text_dim, **kw))

    def forward(self, ids):
        ids = torch.as_tensor(ids, dtype=torch.int64, device=self.token_embedding.device).reshape(-1)
        n, text_len = ids.numel(), self.position_embedding.shape[0]
        if n > text_len:
            raise ValueError(f"{n} tokens exceed text_len {text_len}")
        ctx = self.token_embedding.new_zeros(self.position_embedding.shape)
        ctx[:n] = self.token_embedding[ids] + self.position_embedding[:n]
        return ctx


def tokenize(prompt, vocab):
    """wan-mini tokenizer as wan.h describes it: lower-case, split on spaces and punctuation
    (punctuation is dropped), each word's id = its index in vocab. Unknown words are an error."""
    index = {w: i for i, w in enumerate(vocab)}
    ids = []
    for w in re.findall(r"[0-9a-z]+", prompt.lower()):
        if w not in index:
            raise ValueError(f"word {w!r} is not in the vocabulary: {' '.join(vocab)}")
        ids.append(index[w])
    return ids


class WanModel(nn.Module):
    def __init__(self, config, device=None, dtype=None, attn_fn=None):
        super().__init__()
        c = normalize_config(config)
        self.config = c
        self.attn_fn = attn_fn
        kw = dict(device=device, dtype=dtype)
        dim, pt = c["dim"], c["patch_size"]
        self.patch_embedding = nn.Conv3d(c["in_dim"], dim, kernel_size=pt, stride=pt, **kw)
        self.text_embedding = nn.Sequential(nn.Linear(c["text_dim"], dim, **kw),
                                            nn.GELU(approximate="tanh"), nn.Linear(dim, dim, **kw))
        self.time_embedding = nn.Sequential(nn.Linear(c["freq_dim"], dim, **kw), nn.SiLU(),
                                            nn.Linear(dim, dim, **kw))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, **kw))
        self.blocks = nn.ModuleList([WanAttentionBlock(c, **kw) for _ in range(c["num_layers"])])
        self.head = WanHead(c, **kw)
        self.vocab = list(c["vocab"]) if c.get("vocab") else None
        if self.vocab:
            self.text_encoder = TextEncoder(len(self.vocab), c["text_len"], c["text_dim"], **kw)

    @property
    def compute_dtype(self):
        return self.head.modulation.dtype

    def encode_prompt(self, prompt):
        """wan-mini only: (context [text_len, text_dim], n_tokens)."""
        if not self.vocab:
            raise ValueError("this model has no text encoder (config has no 'vocab')")
        ids = tokenize(prompt, self.vocab)
        return self.text_encoder(ids), len(ids)

    def pad_context(self, context):
        """context: [L, text_dim], [B, L, text_dim] or a list of [L_i, text_dim] → [B, text_len,
        text_dim] with exact zero rows after each L_i."""
        if isinstance(context, torch.Tensor) and context.dim() == 2:
            context = context.unsqueeze(0)
        text_len = self.config["text_len"]
        rows = []
        for u in context:
            if u.shape[0] > text_len or u.shape[1] != self.config["text_dim"]:
                raise ValueError(f"context {tuple(u.shape)} does not fit [<= {text_len}, "
                                 f"{self.config['text_dim']}]")
            rows.append(torch.cat([u, u.new_zeros(text_len - u.shape[0], u.shape[1])]))
        return torch.stack(rows)

    def forward(self, x, t, context, attn_fn=None):
        """x [B, in_dim, F, H, W]; t [B] (or scalar) int or float timesteps; context per
        pad_context. Returns the velocity [B, out_dim, F, H, W] in the compute dtype."""
        attn_fn = attn_fn or self.attn_fn or attention_ref
        c, cdt = self.config, self.compute_dtype
        b = x.shape[0]
        pt, ph, pw = c["patch_size"]
        if x.shape[1] != c["in_dim"] or x.shape[2] % pt or x.shape[3] % ph or x.shape[4] % pw:
            raise ValueError(f"latent {tuple(x.shape)} does not fit in_dim {c['in_dim']} / patch "
                             f"{c['patch_size']}")
        # Patch embed: [B, dim, F', H', W'] → tokens row-major over (f, i, j).
        x = self.patch_embedding(x.to(cdt))
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        # Time embedding (float64 sinusoid, rounded to fp32 as the official .float()).
        t = torch.as_tensor(t, device=x.device).reshape(-1)
        if t.numel() == 1 and b > 1:
            t = t.expand(b)
        with _fp32_region(x):
            sin = sinusoidal_embedding_1d(c["freq_dim"], t).to(torch.float32).to(cdt)
            e = self.time_embedding(sin)
            e0 = self.time_projection(e).unflatten(1, (6, c["dim"]))
        ctx = self.text_embedding(self.pad_context(context).to(device=x.device, dtype=cdt))
        angles = rope_token_angles(c["dim"] // c["num_heads"], grid, device=x.device)
        rope = (torch.cos(angles), torch.sin(angles))  # float64, shared by every block
        for block in self.blocks:
            x = block(x, e0, rope, ctx, attn_fn)
        x = self.head(x, e)
        return unpatchify(x, grid, c["patch_size"], c["out_dim"])


def unpatchify(y, grid, patch, out_dim):
    """y [B, L, pt·ph·pw·out_dim] → [B, out_dim, F'·pt, H'·ph, W'·pw]; channel
    k = ((p·ph + q)·pw + r)·out_dim + c (c fastest), token n = (f·H' + i)·W' + j."""
    (fr, hh, ww), (pt, ph, pw) = grid, patch
    u = y.reshape(y.shape[0], fr, hh, ww, pt, ph, pw, out_dim)
    u = torch.einsum("bfhwpqrc->bcfphqwr", u)
    return u.reshape(y.shape[0], out_dim, fr * pt, hh * ph, ww * pw)


# ------------------------------------------------------------------------------------------------
# Weights

def init_weights_(model, seed=0, use_numpy=True):
    """Random, non-degenerate weights (the official init zeroes the head; this does not):
    Linear/Conv weights N(0, σ) with σ = clamp(1/√fan_in, 0.02, 0.2), biases N(0, 0.05), norm
    weights 1 + N(0, 0.2), norm3 bias N(0, 0.05), modulation N(0, 0.1), wan-mini token/position
    embeddings N(0, 0.5)/N(0, 0.2). use_numpy: draw from numpy's RandomState (a stream numpy
    keeps stable across versions, so fixtures regenerate bit-exactly); otherwise a torch
    generator on the parameters' device (fast for the 1.3B benchmark)."""
    if use_numpy:
        import numpy as np
        rs = np.random.RandomState(seed)
    else:
        gen = None
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("modulation"):
                mean, std = 0.0, 0.1
            elif name.endswith("token_embedding"):
                mean, std = 0.0, 0.5
            elif name.endswith("position_embedding"):
                mean, std = 0.0, 0.2
            elif ("norm" in name) and name.endswith("weight"):
                mean, std = 1.0, 0.2
            elif name.endswith("bias"):
                mean, std = 0.0, 0.05
            else:
                fan_in = p[0].numel()
                mean, std = 0.0, min(0.2, max(0.02, 1.0 / math.sqrt(fan_in)))
            if use_numpy:
                z = torch.from_numpy(rs.standard_normal(tuple(p.shape)))
                p.copy_((mean + std * z).to(p.dtype))
            else:
                if gen is None:
                    gen = torch.Generator(device=p.device)
                    gen.manual_seed(seed)
                p.normal_(mean, std, generator=gen)
    return model


def bf16_round(t):
    return t.to(torch.bfloat16).to(t.dtype)


# ------------------------------------------------------------------------------------------------
# Key names (§2.1, §2.2)

# D scripts/convert_wan_to_diffusers.py TRANSFORMER_KEYS_RENAME_DICT (T2V part), applied to each
# key as ordered substring replaces.
DIFFUSERS_RENAME = [
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.modulation", "scale_shift_table"),
    ("head.head", "proj_out"),
    ("modulation", "scale_shift_table"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    ("norm2", "norm__placeholder"),
    ("norm3", "norm2"),
    ("norm__placeholder", "norm3"),
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"),
]

# The inverse, written independently as anchored patterns (diffusers → original).
_FROM_DIFFUSERS = [
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^(blocks\.\d+)\.ffn\.net\.0\.proj\.", r"\1.ffn.0."),
    (r"^(blocks\.\d+)\.ffn\.net\.2\.", r"\1.ffn.2."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.attn1\.to_out\.0\.", r"\1.self_attn.o."),
    (r"^(blocks\.\d+)\.attn2\.to_out\.0\.", r"\1.cross_attn.o."),
    (r"^(blocks\.\d+)\.attn1\.to_([qkv])\.", r"\1.self_attn.\2."),
    (r"^(blocks\.\d+)\.attn2\.to_([qkv])\.", r"\1.cross_attn.\2."),
    (r"^(blocks\.\d+)\.attn1\.norm_([qk])\.", r"\1.self_attn.norm_\2."),
    (r"^(blocks\.\d+)\.attn2\.norm_([qk])\.", r"\1.cross_attn.norm_\2."),
]

DIFFUSION_PREFIX = "model.diffusion_model."


def to_diffusers_key(key):
    for a, b in DIFFUSERS_RENAME:
        key = key.replace(a, b)
    return key


def to_diffusers(sd):
    return {to_diffusers_key(k): v for k, v in sd.items()}


def from_diffusers_key(key):
    for pat, rep in _FROM_DIFFUSERS:
        new, n = re.subn(pat, rep, key)
        if n:
            return new
    return key  # patch_embedding.* (and text_encoder.*) are unchanged


def from_diffusers(sd):
    return {from_diffusers_key(k): v for k, v in sd.items()}


def add_prefix(sd, prefix=DIFFUSION_PREFIX):
    return {prefix + k: v for k, v in sd.items()}


def strip_prefix(sd, prefix=DIFFUSION_PREFIX):
    if all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def diffusers_config(c):
    """config.json of a diffusers WanTransformer3DModel (§2.2) for reference config c."""
    hd = c["dim"] // c["num_heads"]
    return {"_class_name": "WanTransformer3DModel", "_diffusers_version": "0.33.0",
            "added_kv_proj_dim": None, "attention_head_dim": hd, "cross_attn_norm": True,
            "eps": c["eps"], "ffn_dim": c["ffn_dim"], "freq_dim": c["freq_dim"], "image_dim": None,
            "in_channels": c["in_dim"], "num_attention_heads": c["num_heads"],
            "num_layers": c["num_layers"], "out_channels": c["out_dim"],
            "patch_size": list(c["patch_size"]), "pos_embed_seq_len": None,
            "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": ROPE_MAX_POS,
            "text_dim": c["text_dim"]}


def original_config(c):
    """config.json of an original Wan2.1 checkpoint (§1.1 keys only)."""
    return {"_class_name": "WanModel", "dim": c["dim"],
            "eps": c["eps"], "ffn_dim": c["ffn_dim"], "freq_dim": c["freq_dim"],
            "in_dim": c["in_dim"], "model_type": "t2v", "num_heads": c["num_heads"],
            "num_layers": c["num_layers"], "out_dim": c["out_dim"], "text_len": c["text_len"]}


def load_model(folder, dtype=torch.float32, device=None):
    """Loads a checkpoint folder (original, diffusers or prefixed keys; single file or sharded with
    an index) the way the C loader is meant to: config.json for the numbers, text_dim and patch
    from tensor shapes, text_len from config.json or 512. Returns (model, key_style)."""
    from st_io import load_safetensors
    with open(os.path.join(folder, "config.json")) as f:
        cj = json.load(f)
    index = sorted(glob.glob(os.path.join(folder, "*.safetensors.index.json")))
    if index:
        with open(index[0]) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        files = [os.path.join(folder, n) for n in files]
    else:
        files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    sd = {}
    for p in files:
        for k, v in load_safetensors(p).items():
            if k in sd:
                raise ValueError(f"{p}: tensor {k} appears in two files")
            sd[k] = v
    sd = strip_prefix(sd)
    diffusers = any(k.startswith("condition_embedder.") for k in sd)
    if diffusers:
        sd = from_diffusers(sd)
        c = dict(dim=cj["num_attention_heads"] * cj["attention_head_dim"], ffn_dim=cj["ffn_dim"],
                 num_heads=cj["num_attention_heads"], num_layers=cj["num_layers"],
                 freq_dim=cj["freq_dim"], in_dim=cj["in_channels"], out_dim=cj["out_channels"],
                 eps=cj["eps"], text_len=cj.get("text_len", 512))
    else:
        c = {k: cj[k] for k in ("dim", "ffn_dim", "num_heads", "num_layers", "freq_dim", "in_dim",
                                "out_dim", "eps", "text_len")}
    c["text_dim"] = sd["text_embedding.0.weight"].shape[1]
    c["patch_size"] = tuple(sd["patch_embedding.weight"].shape[2:])
    vocab = cj.get("vocab") or (cj.get("astraea") or {}).get("vocab")  # wan-mini: astraea.vocab
    if vocab:
        c["vocab"] = vocab
    model = WanModel(c, device=device, dtype=dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True)
    return model, ("diffusers" if diffusers else "original")


# ------------------------------------------------------------------------------------------------
# Samplers (§3)

def schedule(steps, shift, num_train_timesteps=1000):
    """FlowUniPCMultistepScheduler(shift=1).set_timesteps(steps, shift=shift): returns
    (sigmas float32 [steps+1] ending in 0, timesteps int64 [steps] = trunc(σ'·1000))."""
    import numpy as np
    alphas = np.linspace(1, 1 / num_train_timesteps, num_train_timesteps)[::-1].copy()
    train = torch.from_numpy(1.0 - alphas).to(torch.float32)
    sigma_max, sigma_min = train[0].item(), train[-1].item()  # 0.9990000128746033, 0.0
    s = np.linspace(sigma_max, sigma_min, steps + 1).copy()[:-1]
    s = shift * s / (1 + (shift - 1) * s)
    timesteps = torch.from_numpy(s * num_train_timesteps).to(torch.int64)
    sigmas = torch.from_numpy(np.concatenate([s, [0.0]]).astype(np.float32))
    return sigmas, timesteps


def model_fn_of(model, attn_fn=None):
    """Adapts a WanModel to model_fn(x [C,F,H,W], t_int, ctx [L, text_dim]) -> v [C,F,H,W]."""
    def fn(x, t, ctx):
        t = torch.as_tensor(t, dtype=torch.int64).reshape(1)
        with torch.no_grad():
            return model(x.unsqueeze(0), t, ctx, attn_fn=attn_fn)[0].to(x.dtype)
    return fn


def guided_velocity(model_fn, x, t, ctx, neg_ctx, guidance):
    """CFG v = v_u + g·(v_c − v_u), both branches at the same integer timestep; g == 1 (or no
    negative context) runs only the conditional branch."""
    v_c = model_fn(x, t, ctx)
    if neg_ctx is None or guidance == 1.0:
        return v_c
    v_u = model_fn(x, t, neg_ctx)
    return v_u + guidance * (v_c - v_u)


def _lam(sigma):
    """λ(σ) = ln(1−σ) − ln σ on float32 0-dim tensors (α = 1 − σ)."""
    return torch.log(1 - sigma) - torch.log(sigma)


def unipc_sample(model_fn, noise, steps, shift, guidance, ctx, neg_ctx=None, order=2,
                 return_steps=False):
    """UniPC exactly as §3.5 (bh2, x0-prediction, lower_order_final, corrector on every step but
    the first, x_N = m_{N−1}). Scalars are float32 0-dim tensors as in the official scheduler;
    the latent keeps noise's dtype. order=1 gives UniP-1/UniC-1 throughout (for testing).
    Returns x, or (x, xs, vs) with xs[i] = the latent after step i (xs[-1] == x) and vs[i] = the
    guided velocity of step i."""
    sig, ts = schedule(steps, shift)
    x = noise
    hist, last_sample, prev_order = [], None, 0
    xs, vs = [], []
    for i in range(steps):
        v = guided_velocity(model_fn, x, ts[i], ctx, neg_ctx, guidance)
        m = x - sig[i] * v  # x0 prediction
        if i > 0:  # UniC corrector on x_i, order prev_order, from σ_{i-1} to σ_i
            s_s, s_t = sig[i - 1], sig[i]
            a_t = 1 - s_t
            lam_s = _lam(s_s)
            h = _lam(s_t) - lam_s
            hh = -h
            phi1 = torch.expm1(hh)
            bh = torch.expm1(hh)
            m0 = hist[-1]
            x_ = s_t / s_s * last_sample - a_t * phi1 * m0
            if prev_order == 1:
                x = x_ - a_t * bh * (0.5 * (m - m0))
            else:
                r1 = (_lam(sig[i - 2]) - lam_s) / h
                d1 = (hist[-2] - m0) / r1
                b1 = (phi1 / hh - 1) / bh
                b2 = 2 * ((phi1 / hh - 1) / hh - 0.5) / bh
                rmat = torch.stack([torch.stack([torch.ones_like(r1), torch.ones_like(r1)]),
                                    torch.stack([r1, torch.ones_like(r1)])])
                rho = torch.linalg.solve(rmat, torch.stack([b1, b2]))
                x = x_ - a_t * bh * (rho[0] * d1 + rho[1] * (m - m0))
        hist = (hist + [m])[-2:]
        cur_order = min(order, steps - i, i + 1)
        last_sample, prev_order = x, cur_order
        # UniP predictor from σ_i to σ_{i+1}
        s_s, s_t = sig[i], sig[i + 1]
        if s_t.item() == 0.0:
            x = m  # λ_t = +∞: φ1 = B = −1, x̃ = m0
        else:
            a_t = 1 - s_t
            lam_s = _lam(s_s)
            h = _lam(s_t) - lam_s
            hh = -h
            phi1 = torch.expm1(hh)
            bh = torch.expm1(hh)
            x_ = s_t / s_s * x - a_t * phi1 * m
            if cur_order == 1:
                x = x_
            else:
                r1 = (_lam(sig[i - 1]) - lam_s) / h
                d1 = (hist[-2] - m) / r1
                x = x_ - a_t * bh * (0.5 * d1)
        xs.append(x)
        vs.append(v)
    return (x, xs, vs) if return_steps else x


def euler_sample(model_fn, noise, steps, shift, guidance, ctx, neg_ctx=None, return_steps=False):
    """Flow-match Euler on the §3.2 schedule: x_{i+1} = x_i + (σ_{i+1} − σ_i)·v_i (float32 dt)."""
    sig, ts = schedule(steps, shift)
    x = noise
    xs, vs = [], []
    for i in range(steps):
        v = guided_velocity(model_fn, x, ts[i], ctx, neg_ctx, guidance)
        x = x + (sig[i + 1] - sig[i]) * v
        xs.append(x)
        vs.append(v)
    return (x, xs, vs) if return_steps else x


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


# ------------------------------------------------------------------------------------------------
# Self-test: `python3 wan_ref.py` checks the pieces against independent formulations of §1–§3.

def _expected_keys(num_layers):
    """The §2.1 key list, spelled out from the spec's table."""
    keys = ["patch_embedding.weight", "patch_embedding.bias"]
    for m in ("text_embedding.0", "text_embedding.2", "time_embedding.0", "time_embedding.2",
              "time_projection.1", "head.head"):
        keys += [m + ".weight", m + ".bias"]
    keys.append("head.modulation")
    for i in range(num_layers):
        p = f"blocks.{i}."
        keys.append(p + "modulation")
        for a in ("self_attn", "cross_attn"):
            keys += [f"{p}{a}.{l}.{w}" for l in "qkvo" for w in ("weight", "bias")]
            keys += [f"{p}{a}.norm_q.weight", f"{p}{a}.norm_k.weight"]
        keys += [p + "norm3.weight", p + "norm3.bias"]
        keys += [p + f"ffn.{l}.{w}" for l in "02" for w in ("weight", "bias")]
    return keys


def _unipc_official_style(model_fn, noise, steps, shift, guidance, ctx, neg_ctx):
    """UniPC in the structure of FlowUniPCMultistepScheduler.step (model_outputs/timestep lists,
    R/b built in a loop, rhos from linalg.solve, lower_order_nums warm-up) — a second spelling
    of §3.5 to hold unipc_sample to."""
    sig, ts = schedule(steps, shift)
    outs, last, this_order, lon = [None, None], None, 1, 0
    x = noise

    def coeffs(s_t, s_s0):
        a_t = 1 - s_t
        lam_t, lam_s0 = torch.log(a_t) - torch.log(s_t), torch.log(1 - s_s0) - torch.log(s_s0)
        return a_t, lam_t - lam_s0, lam_s0

    for i in range(steps):
        v = guided_velocity(model_fn, x, ts[i], ctx, neg_ctx, guidance)
        mc = x - sig[i] * v
        if i > 0:
            s_t, s_s0 = sig[i], sig[i - 1]
            a_t, h, lam_s0 = coeffs(s_t, s_s0)
            m0 = outs[-1]
            rks, d1s = [], []
            for k in range(1, this_order):
                si = i - (k + 1)
                lam_si = torch.log(1 - sig[si]) - torch.log(sig[si])
                rk = (lam_si - lam_s0) / h
                rks.append(rk)
                d1s.append((outs[-(k + 1)] - m0) / rk)
            rks.append(torch.tensor(1.0))
            rks = torch.stack(rks)
            hh = -h
            h_phi_1 = torch.expm1(hh)
            h_phi_k = h_phi_1 / hh - 1
            fac, b_h, rr, bb = 1, torch.expm1(hh), [], []
            for k in range(1, this_order + 1):
                rr.append(torch.pow(rks, k - 1))
                bb.append(h_phi_k * fac / b_h)
                fac *= k + 1
                h_phi_k = h_phi_k / hh - 1 / fac
            rho = torch.tensor([0.5]) if this_order == 1 else torch.linalg.solve(torch.stack(rr), torch.stack(bb))
            corr = sum(rho[k] * d1s[k] for k in range(len(d1s))) if d1s else 0
            x = s_t / s_s0 * last - a_t * h_phi_1 * m0 - a_t * b_h * (corr + rho[-1] * (mc - m0))
        outs = [outs[1], mc]
        this_order = min(min(2, steps - i), lon + 1)
        last = x
        s_t, s_s0 = sig[i + 1], sig[i]
        a_t, h, lam_s0 = coeffs(s_t, s_s0)
        hh = -h
        h_phi_1, b_h = torch.expm1(hh), torch.expm1(hh)
        x_ = s_t / s_s0 * x - a_t * h_phi_1 * mc
        if this_order == 2:
            lam_si = torch.log(1 - sig[i - 1]) - torch.log(sig[i - 1])
            rk = (lam_si - lam_s0) / h
            x = x_ - a_t * b_h * (0.5 * ((outs[0] - mc) / rk))
        else:
            x = x_ - a_t * b_h * 0
        lon = min(lon + 1, 2)
    return x


def selftest():
    torch.manual_seed(0)
    fails = []

    def check(name, ok, detail=""):
        print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
        if not ok:
            fails.append(name)

    # --- schedule (§3.2)
    sig, ts = schedule(50, 5.0)
    check("schedule N=50 s=5 head", ts[:6].tolist() == [999, 995, 991, 987, 982, 978], ts[:6].tolist())
    check("schedule N=50 s=5 tail", ts[-5:].tolist() == [405, 356, 302, 241, 172, 92][-5:]
          and ts[-6:].tolist() == [405, 356, 302, 241, 172, 92], ts[-6:].tolist())
    check("schedule sigmas", sig.dtype == torch.float32 and sig.shape == (51,) and sig[-1].item() == 0
          and abs(sig[0].item() - 0.99980) < 5e-6 and abs(sig[-2].item() - 0.09251) < 5e-6,
          f"{sig[0].item():.6f} {sig[-2].item():.6f}")

    # --- RoPE axis split and rotation vs a complex-number spelling (M rope_params/rope_apply)
    at, ah, aw = rope_angles(128)
    check("rope angles", abs(at[5, 3].item() - 5 * 10000 ** (-6 / 44)) < 1e-15
          and abs(ah[7, 2].item() - 7 * 10000 ** (-4 / 42)) < 1e-15 and at.shape == (1024, 22)
          and aw.shape == (1024, 21))
    se = sinusoidal_embedding_1d(256, torch.tensor([937]))
    check("sinusoid cos first", se.dtype == torch.float64 and abs(se[0, 0].item() - math.cos(937)) < 1e-12
          and abs(se[0, 128].item() - math.sin(937)) < 1e-12
          and abs(se[0, 1].item() - math.cos(937 * 10000 ** (-1 / 128))) < 1e-12)
    check("rope dims", [rope_axis_dims(d) for d in (128, 64, 32)] ==
          [(44, 42, 42), (24, 20, 20), (12, 10, 10)])
    for hd in (128, 64, 32):
        grid = (3, 4, 5)
        x = torch.randn(1, 60, 2, hd)
        c = hd // 2
        tabs = [torch.polar(torch.ones_like(a), a) for a in rope_angles(hd)]
        ft, fh, fw = tabs
        ref = torch.empty(1, 60, 2, hd, dtype=torch.float64)
        for f in range(3):
            for i in range(4):
                for j in range(5):
                    n = (f * 4 + i) * 5 + j
                    fr = torch.cat([ft[f], fh[i], fw[j]])
                    z = torch.view_as_complex(x[0, n].double().reshape(2, c, 2).contiguous())
                    ref[0, n] = torch.view_as_real(z * fr).reshape(2, hd)
        got = rope_apply(x, rope_token_angles(hd, grid))
        check(f"rope apply d={hd}", rel_l2(got, ref) < 1e-7, f"{rel_l2(got, ref):.1e}")

    # --- patch embed as a GEMM (§1.3 item 1) and unpatchify (§1.5), explicit index formulas
    m = init_weights_(WanModel(CONFIG_TINY), seed=1)
    x = torch.randn(1, 16, 3, 8, 12)
    pe = m.patch_embedding(x).flatten(2).transpose(1, 2)[0]  # [L, dim]
    wmat = m.patch_embedding.weight.reshape(128, 64)
    f, i, j = 2, 3, 5
    vec = torch.tensor([x[0, cc, f, 2 * i + a, 2 * j + bb].item()
                        for cc in range(16) for a in range(2) for bb in range(2)])
    n = (f * 4 + i) * 6 + j
    check("patch embed GEMM", rel_l2(pe[n], wmat @ vec + m.patch_embedding.bias) < 1e-6)
    y = torch.randn(1, 3 * 4 * 6, 64)
    u = unpatchify(y, (3, 4, 6), (1, 2, 2), 16)
    ok = all(u[0, cc, f, 2 * i + a, 2 * j + bb] == y[0, (f * 4 + i) * 6 + j, (a * 2 + bb) * 16 + cc]
             for cc in (0, 7, 15) for f in (0, 2) for i in (0, 3) for j in (1, 5) for a in (0, 1) for bb in (0, 1))
    check("unpatchify layout", bool(ok))

    # --- keys and shapes (§2.1), parameter counts of the real configs (§1.1)
    sd = m.state_dict()
    check("tiny keys = §2.1 list", sorted(sd) == sorted(_expected_keys(2)), f"{len(sd)} tensors")
    for cfg, n_params, n_tensors in ((CONFIG_1_3B, 1_418_996_800, 825), (CONFIG_14B, 14_288_491_584, 1095)):
        big = WanModel(cfg, device="meta")
        cnt = sum(p.numel() for p in big.parameters())
        nt = len(big.state_dict())
        check(f"params dim={cfg['dim']}", cnt == n_params and nt == n_tensors, f"{cnt} {nt}")
        del big

    # --- diffusers names (§2.2): expected names, lossless round trip, same outputs
    dk = to_diffusers(sd)
    want = {"condition_embedder.time_embedder.linear_1.weight", "condition_embedder.time_proj.bias",
            "scale_shift_table", "proj_out.weight", "blocks.1.scale_shift_table",
            "blocks.0.ffn.net.0.proj.weight", "blocks.0.ffn.net.2.bias", "blocks.0.norm2.weight",
            "blocks.0.attn1.to_out.0.weight", "blocks.1.attn2.to_k.bias", "blocks.0.attn1.norm_q.weight",
            "blocks.0.attn2.norm_k.weight", "patch_embedding.weight",
            "condition_embedder.text_embedder.linear_2.bias"}
    check("diffusers names", want <= set(dk) and not any("norm3" in k or "modulation" in k for k in dk))
    check("diffusers round trip", from_diffusers(dk).keys() == sd.keys()
          and all(from_diffusers(dk)[k] is sd[k] for k in sd))
    m2 = WanModel(CONFIG_TINY)
    m2.load_state_dict(from_diffusers(dk))
    t = torch.tensor([937])
    ctx = torch.randn(11, 64)
    with torch.no_grad():
        o1, o2 = m(x, t, ctx), m2(x, t, ctx)
    check("diffusers-renamed weights give the same output", torch.equal(o1, o2))
    check("prefix round trip", strip_prefix(add_prefix(sd)).keys() == sd.keys())

    # --- context padding, batching, float t
    with torch.no_grad():
        padded = torch.cat([ctx, torch.zeros(5, 64)])
        check("context zero-padding", torch.equal(m(x, t, padded), o1))
        x2 = torch.randn(1, 16, 3, 8, 12)
        ob = m(torch.cat([x, x2]), torch.tensor([937, 500]), [ctx, ctx[:4]])
        check("batch of 2 = two runs", rel_l2(ob[0], o1[0]) < 1e-6 and
              rel_l2(ob[1], m(x2, torch.tensor([500]), ctx[:4])[0]) < 1e-6)
        check("float t == int t", torch.equal(m(x, torch.tensor([937.0]), ctx), o1))
        md = init_weights_(WanModel(CONFIG_TINY), seed=1).double()
        od = md(x, t, ctx)
        check("fp32 vs fp64 forward", rel_l2(o1, od) < 1e-5, f"{rel_l2(o1, od):.1e}")

    # --- other head dims and patch sizes run and are sane
    for hd, patch in ((32, (1, 2, 2)), (128, (1, 2, 2)), (64, (2, 1, 2))):
        cfg = dict(CONFIG_TINY, num_heads=128 // hd, patch_size=patch)
        mm = init_weights_(WanModel(cfg), seed=2)
        with torch.no_grad():
            o = mm(torch.randn(1, 16, 4, 6, 8), t, ctx)
        check(f"head_dim {hd} patch {patch}", o.shape == (1, 16, 4, 6, 8) and torch.isfinite(o).all()
              and 0.1 < o.std().item() < 10, f"std {o.std().item():.2f}")

    # --- wan-mini text encoder
    vocab = ["a", "cat", "dog", "runs", "on", "grass"]
    mt = init_weights_(WanModel(dict(CONFIG_TINY, vocab=vocab)), seed=3)
    keys = set(mt.state_dict())
    check("text_encoder keys", {"text_encoder.token_embedding", "text_encoder.position_embedding"} <= keys
          and mt.state_dict()["text_encoder.position_embedding"].shape == (16, 64))
    with torch.no_grad():
        c2, n2 = mt.encode_prompt("A cat, runs on grass.")
        te = mt.text_encoder
        ok = n2 == 5 and torch.equal(c2[1], te.token_embedding[1] + te.position_embedding[1]) \
            and torch.equal(c2[4], te.token_embedding[5] + te.position_embedding[4]) and not c2[5:].any()
    check("text_encoder rows", ok)

    # --- samplers (§3.4, §3.5) on a cheap nonlinear stand-in model
    wsyn = torch.randn(16, 16) / 4

    def fake(xx, tt, cc):
        return torch.tanh(torch.einsum("ij,j...->i...", wsyn, xx)) * (1 + float(tt) / 1000) + cc.mean()

    noise = torch.randn(16, 3, 8, 12)
    cpos, cneg = torch.randn(11, 64), torch.randn(7, 64)
    for n_steps in (3, 6, 10, 50):
        a = unipc_sample(fake, noise, n_steps, 5.0, 5.0, cpos, cneg)
        b = _unipc_official_style(fake, noise, n_steps, 5.0, 5.0, cpos, cneg)
        check(f"unipc = official-style loop, {n_steps} steps", rel_l2(a, b) < 1e-6, f"{rel_l2(a, b):.1e}")
    _, xs_u, _ = unipc_sample(fake, noise, 6, 5.0, 5.0, cpos, cneg, order=1, return_steps=True)
    _, xs_e, vs_e = euler_sample(fake, noise, 6, 5.0, 5.0, cpos, cneg, return_steps=True)
    check("unipc order 1 step 1 = euler step 1", rel_l2(xs_u[0], xs_e[0]) < 1e-6, f"{rel_l2(xs_u[0], xs_e[0]):.1e}")
    _, xs2, vs2 = unipc_sample(fake, noise, 6, 5.0, 5.0, cpos, cneg, return_steps=True)
    check("unipc order 2 step 1 = euler step 1", rel_l2(xs2[0], xs_e[0]) < 1e-6)
    check("unipc differs from euler after step 1", rel_l2(xs2[-1], xs_e[-1]) > 1e-3)
    sg, _ = schedule(6, 5.0)
    check("euler last step lands on x0 prediction",
          rel_l2(xs_e[-1], xs_e[-2] - sg[5] * vs_e[-1]) < 1e-6)
    check("cfg g=1 is the cond branch", torch.equal(guided_velocity(fake, noise, 500, cpos, cneg, 1.0),
                                                     fake(noise, 500, cpos)))

    print(f"{len(fails)} failed" if fails else "all passed")
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(selftest())
