"""data.py: the deterministic, seeded generator of wan-mini training clips and their captions.

A clip is 8 frames of 32x32 RGB in [-1, 1], returned as [B, 3, 8, 32, 32] (Wan's [C, F, H, W] per
sample; pixel space, so the 3 "latent" channels are viewable directly). Each clip has a STATIC
background (plain, striped, checkered, noisy = random 4x4-pixel blocks, or gradient, in one
dark colour) and 1 or 2 moving
shapes (circle, square, triangle, cross, ring) in bright colours, moving left/right/up/down in a
straight line at constant speed. Objects are drawn in a random order, so later ones occlude earlier
ones. Object colours are bright and background colours are dark shades (max channel <= 0.5), so the
evaluator can tell object pixels from background pixels by colour.

Captions come from a 33-word vocabulary (VOCAB) and never exceed TEXT_LEN = 16 words:
    "a|an [small|large] COLOUR SHAPE moves [slowly|quickly] DIR over a|an [TEXTURE] BGCOLOUR background
     [and a|an [small|large] COLOUR SHAPE moves [slowly|quickly] DIR]"
Medium size / medium speed / plain texture are not spoken. When a two-object caption would be
longer than 16 words, spoken size/speed attributes are set back to medium (in the clip itself, so
the caption stays true) until it fits.

Motion trail (recipe v3): behind each object, fading copies at its positions one and two frames
earlier (opacity TRAIL = (0.45, 0.2); the first frames extrapolate backwards). Direction then is a
local, lopsided pattern in every frame ("the trail is on the left: it moves right"), the kind of
caption -> pattern mapping the model learns (colour, size, shape); without it the direction word
was ignored entirely (models/wan-mini/README.md "Why direction was not learned"). TRAIL = () draws
no trail.

Held out for evaluation: one background colour per (colour, shape, direction) triple, i.e. every
(colour, shape, direction, bg colour) tuple with (c + 2 s + 3 d + b) % 9 == 0 (160 of 1440 tuples).
No training object ever has a held-out tuple; evaluate.py prompts are drawn from them.

Parameters are sampled with numpy (np.random.default_rng(seed)); rendering is vectorised torch on
any device (CPU here, CUDA in training), so the GPU generates clips as fast as the model eats them.
Same seed + same device type -> same clips.

    gen = ClipGenerator(seed=0)
    batch = gen.sample(256)                      # parameters + captions (numpy, python lists)
    x = render(batch, device="cuda")             # [256, 3, 8, 32, 32] float32 in [-1, 1]
    batch["ids"], batch["lens"]                  # [256, 16] int64 token ids (-1 = no token), [256]

Command line (inspection): python3 data.py --n 8 --seed 0 --out /tmp/clips
    writes clips.npy [n, 3, 8, 32, 32], captions.txt and sheet.png (one row per clip, 8 frames).
"""
import argparse
import json
import os
import re
import struct
import sys
import time
import zlib

import numpy as np
import torch

FRAMES, HEIGHT, WIDTH = 8, 32, 32
TEXT_LEN = 16
MAX_OBJECTS = 2

# Bright object colours, RGB in [0, 1].
OBJ_COLOURS = [
    ("red", (1.00, 0.08, 0.08)),
    ("green", (0.10, 0.90, 0.10)),
    ("blue", (0.15, 0.35, 1.00)),
    ("yellow", (1.00, 0.95, 0.10)),
    ("white", (1.00, 1.00, 1.00)),
    ("purple", (0.70, 0.15, 1.00)),
    ("orange", (1.00, 0.55, 0.00)),
    ("cyan", (0.05, 0.95, 0.95)),
]
# Dark background colours: (name, base RGB, alternate shade used by textures).
BG_COLOURS = [
    ("black", (0.00, 0.00, 0.00), (0.20, 0.20, 0.20)),
    ("gray", (0.42, 0.42, 0.42), (0.22, 0.22, 0.22)),
    ("red", (0.45, 0.05, 0.05), (0.22, 0.02, 0.02)),
    ("green", (0.05, 0.40, 0.05), (0.02, 0.18, 0.02)),
    ("blue", (0.05, 0.12, 0.50), (0.02, 0.05, 0.24)),
    ("yellow", (0.42, 0.40, 0.04), (0.20, 0.19, 0.02)),
    ("purple", (0.32, 0.06, 0.45), (0.15, 0.03, 0.22)),
    ("orange", (0.48, 0.24, 0.02), (0.24, 0.11, 0.01)),
    ("cyan", (0.04, 0.36, 0.38), (0.02, 0.17, 0.18)),
]
SHAPES = ["circle", "square", "triangle", "cross", "ring"]
DIRECTIONS = [("left", (-1.0, 0.0)), ("right", (1.0, 0.0)), ("up", (0.0, -1.0)), ("down", (0.0, 1.0))]
SIZES = [("small", 2.6), (None, 3.6), ("large", 4.6)]        # word, half-extent in pixels
SPEEDS = [("slowly", 1.8), (None, 2.4), ("quickly", 3.0)]    # word, pixels per frame
TEXTURES = [None, "striped", "checkered", "noisy", "gradient"]  # None = plain (not spoken)

VOCAB = (["a", "an", "and", "moves", "over", "background", "small", "large", "slowly", "quickly"]
         + [c for c, _ in OBJ_COLOURS] + ["black", "gray"]
         + SHAPES + [d for d, _ in DIRECTIONS] + [t for t in TEXTURES if t])
assert len(VOCAB) == len(set(VOCAB)) and len(VOCAB) < 64
WORD_ID = {w: i for i, w in enumerate(VOCAB)}
OBJ_RGB = np.array([c for _, c in OBJ_COLOURS], np.float32)
BG_RGB = np.array([b for _, b, _ in BG_COLOURS], np.float32)
BG_ALT = np.array([a for _, _, a in BG_COLOURS], np.float32)


def held_out(colour, shape, direction, bg):
    """True for the (colour, shape, direction, bg colour) tuples kept out of training (arrays ok)."""
    return (np.asarray(colour) + 2 * np.asarray(shape) + 3 * np.asarray(direction)
            + np.asarray(bg)) % 9 == 0


def held_out_tuples():
    return [(c, s, d, b) for c in range(len(OBJ_COLOURS)) for s in range(len(SHAPES))
            for d in range(len(DIRECTIONS)) for b in range(len(BG_COLOURS)) if held_out(c, s, d, b)]


def tokenize(text):
    """Prompt -> list of vocab ids, as the C side (ast_wan_encode_prompt) and wan_ref.tokenize do
    it: lower-case, split on anything that is not a letter or digit, id = index in VOCAB.
    Unknown words and prompts longer than TEXT_LEN words are errors (ValueError)."""
    words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
    unknown = [w for w in words if w not in WORD_ID]
    if unknown:
        raise ValueError(f"prompt {text!r}: words not in the vocabulary: {unknown}; vocabulary: {' '.join(VOCAB)}")
    if len(words) > TEXT_LEN:
        raise ValueError(f"prompt {text!r} has {len(words)} words, at most {TEXT_LEN}")
    return [WORD_ID[w] for w in words]


def tokenize_batch(captions):
    """List of captions -> (ids [B, TEXT_LEN] int64 with -1 after the last word, lengths [B])."""
    ids = np.full((len(captions), TEXT_LEN), -1, np.int64)
    lens = np.zeros(len(captions), np.int64)
    for i, c in enumerate(captions):
        t = tokenize(c)
        ids[i, :len(t)] = t
        lens[i] = len(t)
    return ids, lens


def caption_words(p, i):
    """Caption of clip i of a parameter batch p, as a list of words (main object first)."""
    def obj(k, article_and=False):
        w = ["and"] if article_and else []
        size = SIZES[p["size"][i, k]][0]
        colour = OBJ_COLOURS[p["colour"][i, k]][0]
        w.append("an" if (size or colour)[0] in "aeiou" else "a")
        if size:
            w.append(size)
        w += [colour, SHAPES[p["shape"][i, k]], "moves"]
        speed = SPEEDS[p["speed"][i, k]][0]
        if speed:
            w.append(speed)
        w.append(DIRECTIONS[p["direction"][i, k]][0])
        return w
    tex = TEXTURES[p["texture"][i]]
    bg = BG_COLOURS[p["bg"][i]][0]
    words = obj(0) + ["over", "an" if (tex or bg)[0] in "aeiou" else "a"]
    if tex:
        words.append(tex)
    words += [bg, "background"]
    for k in range(1, p["n_obj"][i]):
        words += obj(k, article_and=True)
    return words


class ClipGenerator:
    """Seeded sampler of clip parameters. sample(B) returns a dict of numpy arrays (objects padded
    to MAX_OBJECTS; absent objects have present=False) plus "ids"/"lens" (token ids, see
    caption_ids), "captions" (strings; skipped with captions=False, which training uses for
    speed) and "seed" (the torch seed for the noise texture of this batch)."""

    def __init__(self, seed=0, max_objects=MAX_OBJECTS, p_two=0.35, allow_held_out=False, captions=True):
        self.rng = np.random.default_rng(seed)
        self.captions = captions
        self.max_objects = max_objects
        self.p_two = p_two
        self.allow_held_out = allow_held_out

    def sample(self, B):
        r, K = self.rng, MAX_OBJECTS
        p = {
            "n_obj": np.where(r.random(B) < self.p_two, 2, 1) if self.max_objects > 1 else np.ones(B, np.int64),
            "bg": r.integers(0, len(BG_COLOURS), B),
            "texture": r.integers(0, len(TEXTURES), B),
            "tex_orient": r.integers(0, 2, B),            # stripes: 0 horizontal bands, 1 vertical
            "tex_period": r.choice([4, 6, 8], B),          # stripes period / checker cell*2, pixels
            "tex_phase": r.random(B).astype(np.float32),   # fraction of a period
            "grad_angle": (r.random(B) * 2 * np.pi).astype(np.float32),
            "colour": r.integers(0, len(OBJ_COLOURS), (B, K)),
            "shape": r.integers(0, len(SHAPES), (B, K)),
            "direction": r.integers(0, len(DIRECTIONS), (B, K)),
            "size": r.integers(0, len(SIZES), (B, K)),
            "speed": r.integers(0, len(SPEEDS), (B, K)),
            "jitter": r.random((B, K, 4)).astype(np.float32),  # size, speed, along, across
            "order": np.argsort(r.random((B, K)), axis=1),     # drawing order (last drawn on top)
        }
        p["present"] = np.arange(K)[None, :] < p["n_obj"][:, None]
        # Distinct colours within a clip (so each object is identifiable by colour).
        same = p["colour"][:, 1] == p["colour"][:, 0]
        p["colour"][same, 1] = (p["colour"][same, 1] + r.integers(1, len(OBJ_COLOURS), same.sum())) % len(OBJ_COLOURS)
        if not self.allow_held_out:
            for _ in range(100):  # resample held-out objects (each try fixes ~8/9 of them)
                bad = held_out(p["colour"], p["shape"], p["direction"], p["bg"][:, None]) & p["present"]
                if not bad.any():
                    break
                p["direction"][bad] = r.integers(0, len(DIRECTIONS), bad.sum())
            assert not bad.any()
        # Keep captions within TEXT_LEN words: drop spoken size/speed (set to medium) until it fits.
        for key, k in (("speed", 1), ("size", 1), ("speed", 0), ("size", 0)):
            over = caption_length(p) > TEXT_LEN
            p[key][over, k] = 1
        assert (caption_length(p) <= TEXT_LEN).all()
        p["ids"], p["lens"] = caption_ids(p)
        if self.captions:
            p["captions"] = [" ".join(caption_words(p, i)) for i in range(B)]
        p["seed"] = int(r.integers(0, 2**62))
        return p


_SIZE_ID = np.array([WORD_ID.get(w, -1) if w else -1 for w, _ in SIZES])
_SPEED_ID = np.array([WORD_ID.get(w, -1) if w else -1 for w, _ in SPEEDS])
_COLOUR_ID = np.array([WORD_ID[c] for c, _ in OBJ_COLOURS])
_SHAPE_ID = np.array([WORD_ID[s] for s in SHAPES])
_DIR_ID = np.array([WORD_ID[d] for d, _ in DIRECTIONS])
_TEX_ID = np.array([WORD_ID[t] if t else -1 for t in TEXTURES])
_BG_ID = np.array([WORD_ID[c] for c, _, _ in BG_COLOURS])
_VOWEL = np.array([w[0] in "aeiou" for w in VOCAB])


def _caption_slots(p):
    """Every caption as word-id slots in grammar order: ids [B, S] and present [B, S] (a slot is
    absent when its attribute is unspoken or its object absent). The vectorised twin of
    caption_words; caption_length and caption_ids read it."""
    B = len(p["bg"])
    slots = []                                                                 # (ids [B], present [B])
    yes = np.ones(B, bool)

    def const(w):
        return np.full(B, WORD_ID[w])

    def article(first):
        return np.where(_VOWEL[first], WORD_ID["an"], WORD_ID["a"])

    def obj(k, present, lead_and):
        size, colour = _SIZE_ID[p["size"][:, k]], _COLOUR_ID[p["colour"][:, k]]
        speed = _SPEED_ID[p["speed"][:, k]]
        if lead_and:
            slots.append((const("and"), present))
        slots.extend([(article(np.where(size >= 0, size, colour)), present), (size, present & (size >= 0)),
                      (colour, present), (_SHAPE_ID[p["shape"][:, k]], present), (const("moves"), present),
                      (speed, present & (speed >= 0)), (_DIR_ID[p["direction"][:, k]], present)])
    obj(0, yes, False)
    tex, bg = _TEX_ID[p["texture"]], _BG_ID[p["bg"]]
    slots.extend([(const("over"), yes), (article(np.where(tex >= 0, tex, bg)), yes), (tex, tex >= 0),
                  (bg, yes), (const("background"), yes)])
    for k in range(1, MAX_OBJECTS):
        obj(k, p["n_obj"] > k, True)
    return np.stack([s[0] for s in slots], 1), np.stack([s[1] for s in slots], 1)


def caption_length(p):
    """Words in each caption [B] (vectorised; matches len(caption_words))."""
    return _caption_slots(p)[1].sum(1)


def caption_ids(p):
    """Token ids of every caption without building strings (vectorised; equals
    tokenize(" ".join(caption_words(p, i)))): ids [B, TEXT_LEN] with -1 after the last word,
    lengths [B]."""
    ids, keep = _caption_slots(p)
    order = np.argsort(~keep, axis=1, kind="stable")                           # kept slots first
    ids = np.take_along_axis(np.where(keep, ids, -1), order, 1)[:, :TEXT_LEN]
    lens = keep.sum(1)
    assert (lens <= TEXT_LEN).all()
    return ids.astype(np.int64), lens


def prompt_params(prompts):
    """Parse captions of the generator's grammar back into a parameter batch (for ground-truth
    clips of evaluation prompts). Unspoken attributes take their medium/plain value; positions
    are chosen by render's defaults (jitter 0.5 = centred)."""
    B = len(prompts)
    p = {k: np.zeros((B,), np.int64) for k in ("n_obj", "bg", "texture", "tex_orient")}
    p["tex_period"] = np.full(B, 6)
    p["tex_phase"] = np.zeros(B, np.float32)
    p["grad_angle"] = np.zeros(B, np.float32)
    for k in ("colour", "shape", "direction", "size", "speed"):
        p[k] = np.zeros((B, MAX_OBJECTS), np.int64)
    p["size"][:] = 1
    p["speed"][:] = 1
    p["jitter"] = np.full((B, MAX_OBJECTS, 4), 0.5, np.float32)
    p["order"] = np.tile(np.arange(MAX_OBJECTS), (B, 1))
    obj_names = [c for c, _ in OBJ_COLOURS]
    bg_names = [c for c, _, _ in BG_COLOURS]
    for i, text in enumerate(prompts):
        words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
        k, in_bg = 0, False
        for w in words:
            if w == "and":
                k += 1
                in_bg = False
            elif w == "over":
                in_bg = True
            elif in_bg and w in bg_names:
                p["bg"][i] = bg_names.index(w)
            elif in_bg and w in TEXTURES:
                p["texture"][i] = TEXTURES.index(w)
            elif w in obj_names:
                p["colour"][i, k] = obj_names.index(w)
            elif w in SHAPES:
                p["shape"][i, k] = SHAPES.index(w)
            elif w in [d for d, _ in DIRECTIONS]:
                p["direction"][i, k] = [d for d, _ in DIRECTIONS].index(w)
            elif w in ("small", "large"):
                p["size"][i, k] = 0 if w == "small" else 2
            elif w in ("slowly", "quickly"):
                p["speed"][i, k] = 0 if w == "slowly" else 2
        p["n_obj"][i] = k + 1
    p["present"] = np.arange(MAX_OBJECTS)[None, :] < p["n_obj"][:, None]
    p["captions"] = list(prompts)
    p["seed"] = 0
    return p


def _sdf(shape, dx, dy, r):
    """Signed distance (pixels, negative inside) of every shape, stacked on a new first axis in
    SHAPES order. dx, dy: offsets from the object centre; r: half-extent (broadcastable)."""
    ax, ay = dx.abs(), dy.abs()
    d = torch.sqrt(dx * dx + dy * dy)
    circle = d - r
    square = torch.maximum(ax, ay) - 0.85 * r
    # Upward triangle: apex (0, -r), base at y = +0.65 r, half-width r at the base.
    n = 1.0 / np.sqrt(1.65 ** 2 + 1.0)
    side = (1.65 * ax - (dy + r)) * n
    triangle = torch.maximum(side, dy - 0.65 * r)
    arm = 0.34 * r
    cross = torch.minimum(torch.maximum(ax - r, ay - arm), torch.maximum(ax - arm, ay - r))
    ring = (d - 0.7 * r).abs() - 0.3 * r
    all_ = torch.stack([circle, square, triangle, cross, ring])
    return torch.gather(all_, 0, shape.unsqueeze(0).expand_as(all_[:1]).clone()).squeeze(0)


def object_tracks(p):
    """Per object: radius [B,K], centre x/y for every frame [B,K,F] (pixels, 0 = left/top edge).
    The path stays inside the frame where it fits (a large, quick object may leave it by up to
    ~1.5 px at the end); 'jitter' picks the speed/size within ±8 % and the start position within
    the feasible range."""
    j = p["jitter"]
    rad = np.array([s for _, s in SIZES], np.float32)[p["size"]] * (0.92 + 0.16 * j[..., 0])
    spd = np.array([s for _, s in SPEEDS], np.float32)[p["speed"]] * (0.92 + 0.16 * j[..., 1])
    dirv = np.array([d for _, d in DIRECTIONS], np.float32)[p["direction"]]  # [B,K,2]
    travel = spd * (FRAMES - 1)
    lo = rad + 0.5
    along_hi = np.maximum(WIDTH - 0.5 - rad - travel, lo)        # start so the end stays inside
    along = lo + (along_hi - lo) * j[..., 2]                     # distance from the start edge
    across = lo + (WIDTH - 0.5 - rad - lo) * j[..., 3]
    t = np.arange(FRAMES, dtype=np.float32)
    # Moving in +axis: start at 'along'; moving in -axis: start at W - along.
    pos_along = along[..., None] + spd[..., None] * t                # [B,K,F], in the +axis sense
    horiz = dirv[..., 0] != 0
    neg = (dirv[..., 0] < 0) | (dirv[..., 1] < 0)
    pos_along = np.where(neg[..., None], WIDTH - pos_along, pos_along)
    cx = np.where(horiz[..., None], pos_along, across[..., None])
    cy = np.where(horiz[..., None], across[..., None], pos_along)
    return rad, cx.astype(np.float32), cy.astype(np.float32)


def background(p, device):
    """Static background [B, 3, H, W] in [0, 1]."""
    B = len(p["bg"])
    dev = torch.device(device)
    ys = torch.arange(HEIGHT, device=dev, dtype=torch.float32).view(1, HEIGHT, 1).expand(B, HEIGHT, WIDTH)
    xs = torch.arange(WIDTH, device=dev, dtype=torch.float32).view(1, 1, WIDTH).expand(B, HEIGHT, WIDTH)

    def col(a):
        return torch.as_tensor(np.asarray(a), device=dev).view(B, *([1] * 2))

    period = col(p["tex_period"].astype(np.float32))
    phase = col(p["tex_phase"]) * period
    u = torch.where(col(p["tex_orient"]) == 0, ys, xs)
    stripes = torch.remainder(torch.floor((u + phase) / (period / 2)), 2)
    cell = period / 2 + 1  # 3, 4 or 5 pixels
    checker = torch.remainder(torch.floor((xs + phase) / cell) + torch.floor((ys + phase) / cell), 2)
    g = torch.Generator(device=dev)
    g.manual_seed(p["seed"])
    # "noisy": random levels on 4x4-pixel blocks, grid offset by the phase (so blocks straddle
    # the model's 4x4 patches); per-pixel noise would be unlearnable high-entropy detail.
    cells = torch.rand((B, HEIGHT // 4 + 1, WIDTH // 4 + 1), generator=g, device=dev)
    off = torch.floor(col(p["tex_phase"]) * 4)
    cy = torch.floor((ys + off) / 4).long()
    cx = torch.floor((xs + off) / 4).long()
    noise = cells[torch.arange(B, device=dev).view(B, 1, 1), cy, cx]
    ang = col(p["grad_angle"])
    proj = (xs - WIDTH / 2 + 0.5) * torch.cos(ang) + (ys - HEIGHT / 2 + 0.5) * torch.sin(ang)
    gradient = (proj / (WIDTH * 0.71) + 0.5).clamp(0, 1)
    tex = torch.stack([torch.zeros_like(noise), stripes, checker, noise, gradient])  # [5,B,H,W]
    sel = torch.as_tensor(p["texture"], device=dev).view(1, B, 1, 1).expand(1, B, HEIGHT, WIDTH)
    t = torch.gather(tex, 0, sel).squeeze(0).unsqueeze(1)                        # [B,1,H,W]
    base = torch.as_tensor(BG_RGB[p["bg"]], device=dev).view(B, 3, 1, 1)
    alt = torch.as_tensor(BG_ALT[p["bg"]], device=dev).view(B, 3, 1, 1)
    return base + (alt - base) * t


def _paint(img, vis, shp, dx, dy, r, present, colour, opacity=None):
    """Composite one copy of an object over img [B, 3, F, H, W]: anti-aliased coverage
    a = clamp(0.5 - sdf, 0, 1) [B, F, H, W] (offsets dx, dy from the copy's centre, see _sdf), times
    present [B, 1, 1, 1] and opacity (None: the object itself, opaque; a trail copy's float),
    blended in colour [B, 3, 1, 1, 1]; vis (the (k, coverage) pairs of the layers below, or None
    when not tracked) is occluded by it. Returns (img, vis, a)."""
    a = (0.5 - _sdf(shp, dx, dy, r)).clamp(0, 1) * present
    if opacity is not None:
        a = a * opacity
    a5 = a.unsqueeze(1)
    img = img * (1 - a5) + colour * a5
    if vis is not None:
        vis = [(kk, v * (1 - a)) for kk, v in vis]
    return img, vis, a


TRAIL = (0.45, 0.2)  # opacity of the copies 1, 2, ... frames behind each object (v3); () = none


def render(p, device="cpu", with_alpha=False, trail=None):
    """Parameter batch -> clips [B, 3, F, H, W] float32 in [-1, 1] (and, with_alpha, the per-object
    coverage [B, K, F, H, W] after occlusion, for validating the evaluator). trail: opacities of
    the motion trail (default TRAIL)."""
    trail = TRAIL if trail is None else trail
    dev = torch.device(device)
    B, K = p["colour"].shape
    rad, cx, cy = object_tracks(p)
    img = background(p, dev).unsqueeze(2).expand(B, 3, FRAMES, HEIGHT, WIDTH).contiguous()
    ys = torch.arange(HEIGHT, device=dev, dtype=torch.float32).view(1, 1, HEIGHT, 1) + 0.5
    xs = torch.arange(WIDTH, device=dev, dtype=torch.float32).view(1, 1, 1, WIDTH) + 0.5
    vis = [] if with_alpha else None
    for layer in range(K):  # draw in p["order"]: layer 0 first (bottom)
        k = p["order"][:, layer]
        idx = np.arange(B)
        cxk = torch.as_tensor(cx[idx, k], device=dev).view(B, FRAMES, 1, 1)
        cyk = torch.as_tensor(cy[idx, k], device=dev).view(B, FRAMES, 1, 1)
        rk = torch.as_tensor(rad[idx, k], device=dev).view(B, 1, 1, 1)
        shp = torch.as_tensor(p["shape"][idx, k], device=dev).view(B, 1, 1, 1).expand(B, FRAMES, HEIGHT, WIDTH)
        present = torch.as_tensor(p["present"][idx, k], device=dev, dtype=torch.float32).view(B, 1, 1, 1)
        colour = torch.as_tensor(OBJ_RGB[p["colour"][idx, k]], device=dev).view(B, 3, 1, 1, 1)
        # the trail first (farthest copy at the bottom), at the positions j frames earlier
        vx = torch.as_tensor(np.diff(cx[idx, k], axis=1).mean(1), device=dev).view(B, 1, 1, 1)
        vy = torch.as_tensor(np.diff(cy[idx, k], axis=1).mean(1), device=dev).view(B, 1, 1, 1)
        for j in range(len(trail), 0, -1):
            img, vis, _ = _paint(img, vis, shp, xs - (cxk - j * vx), ys - (cyk - j * vy), rk, present, colour,
                                 trail[j - 1])
        img, vis, a = _paint(img, vis, shp, xs - cxk, ys - cyk, rk, present, colour)
        if with_alpha:
            vis.append((k, a))
    x = img * 2 - 1
    if not with_alpha:
        return x
    alpha = torch.zeros(B, K, FRAMES, HEIGHT, WIDTH, device=dev)
    for k, a in vis:
        alpha[np.arange(B), k] = a
    return x, alpha


def write_png(path, rgb):
    """rgb: uint8 array [H, W, 3] -> PNG file (stdlib only)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def clip_sheet(clips, scale=3, gap=2):
    """clips [N, 3, F, H, W] in [-1, 1] -> uint8 image [N rows, F columns] (scaled, gray gaps)."""
    clips = np.asarray(clips, np.float32)
    n, _, f, h, w = clips.shape
    hs, ws = h * scale, w * scale
    out = np.full((n * (hs + gap) + gap, f * (ws + gap) + gap, 3), 128, np.uint8)
    u8 = np.clip((clips + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    for i in range(n):
        for t in range(f):
            fr = u8[i, :, t].transpose(1, 2, 0).repeat(scale, 0).repeat(scale, 1)
            y0, x0 = gap + i * (hs + gap), gap + t * (ws + gap)
            out[y0:y0 + hs, x0:x0 + ws] = fr
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8, help="clips to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/wan-mini-clips", help="output folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bench", type=int, default=0, help="time this many batches of 256 and exit")
    a = ap.parse_args(argv)
    if a.bench:
        gen = ClipGenerator(seed=a.seed, captions=False)
        render(gen.sample(256), a.device)
        t0 = time.time()
        ts = 0.0
        for _ in range(a.bench):
            s0 = time.time()
            p = gen.sample(256)
            ts += time.time() - s0
            x = render(p, a.device)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.time() - t0
        print(f"{a.bench * 256 / dt:.0f} clips/s on {a.device} (parameter+token sampling {ts / dt:.0%} of the time)")
        return 0
    os.makedirs(a.out, exist_ok=True)
    gen = ClipGenerator(seed=a.seed)
    p = gen.sample(a.n)
    x = render(p, a.device).cpu().numpy()
    np.save(os.path.join(a.out, "clips.npy"), x)
    with open(os.path.join(a.out, "captions.txt"), "w") as f:
        f.write("\n".join(p["captions"]) + "\n")
    write_png(os.path.join(a.out, "sheet.png"), clip_sheet(x))
    print("\n".join(p["captions"]))
    print(f"wrote {a.out}/clips.npy {list(x.shape)}, captions.txt, sheet.png; vocab {len(VOCAB)} words: {json.dumps(VOCAB)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
