"""measure.py: reads back from a clip's pixels what wan-mini was asked to draw.

Used by evaluate.py on generated clips, and validated on ground-truth clips from data.py.

A clip is [3, F, H, W] in [-1, 1]. data.py draws objects in bright colours (OBJ_COLOURS) over a
static background in dark shades (BG_COLOURS base/alternate), so:
  1. every pixel of every frame is given its nearest palette entry (8 bright + 18 dark shades);
  2. "moving" pixels are those whose value changes over time (temporal max - min > 0.25 in [0, 1]
     RGB units on some channel: a static background, noisy or not, never does);
  3. each moving pixel whose nearest entry is bright votes for that object colour; colours with at
     least MIN_FRAC of the winner's votes (and MIN_VOTES) are objects, most votes first;
  4. an object's track is the centroid, per frame, of the largest 4-connected blob of pixels
     nearest to its colour (moving or not, so the core of a large slow object counts; stray
     speckles of a noisy generated clip do not); least-squares velocity over the frames where
     it has >= 2 pixels; direction = sign of the dominant axis if its speed >= MIN_SPEED px/frame,
     else "static" (y grows downwards, so "up" is negative vy);
  5. the background colour is the majority vote of the never-bright, temporal-median pixels among
     the dark shades.
The main (first-captioned) object of a single-object prompt is objects[0].
"""
import numpy as np

from data import BG_ALT, BG_COLOURS, BG_RGB, DIRECTIONS, OBJ_COLOURS, OBJ_RGB

MOVE_THR = 0.25     # temporal range (0..1 RGB) for a pixel to count as changing
MIN_VOTES = 6       # moving bright pixels (over all frames) for a colour to be an object
MIN_FRAC = 0.2      # ... and at least this fraction of the top colour's votes
MIN_SPEED = 0.5     # px/frame along the dominant axis, else "static"

_PAL = np.concatenate([OBJ_RGB, BG_RGB, BG_ALT])                       # [26, 3]
_NOBJ = len(OBJ_RGB)
_BG_NAME_OF = [c for c, _, _ in BG_COLOURS] * 2                          # dark entry -> name


def _nearest(rgb):
    """rgb [..., 3] -> index of the nearest palette entry (Euclidean in RGB)."""
    d = ((rgb[..., None, :] - _PAL) ** 2).sum(-1)
    return d.argmin(-1)


def largest_component(mask):
    """mask [H, W] bool -> mask of its largest 4-connected component (iterative max-label
    propagation; numpy only)."""
    if not mask.any():
        return mask
    H, W = mask.shape
    lab = np.where(mask, np.arange(1, H * W + 1).reshape(H, W), 0)
    while True:
        p = np.pad(lab, 1)
        nb = np.maximum.reduce([p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        new = np.where(mask, nb, 0)
        if (new == lab).all():
            break
        lab = new
    ids, counts = np.unique(lab[mask], return_counts=True)
    return lab == ids[counts.argmax()]


def track_direction(mask):
    """mask [F, H, W] bool -> (direction name or 'static'/'none', vx, vy) in px/frame."""
    F = mask.shape[0]
    ts, xs, ys = [], [], []
    for t in range(F):
        yy, xx = np.nonzero(mask[t])
        if len(xx) >= 2:
            ts.append(t)
            xs.append(xx.mean())
            ys.append(yy.mean())
    if len(ts) < max(3, F // 2):
        return "none", 0.0, 0.0
    ts = np.asarray(ts, np.float64)
    tc = ts - ts.mean()
    vx = float((tc * (np.asarray(xs) - np.mean(xs))).sum() / (tc * tc).sum())
    vy = float((tc * (np.asarray(ys) - np.mean(ys))).sum() / (tc * tc).sum())
    if max(abs(vx), abs(vy)) < MIN_SPEED:
        return "static", vx, vy
    if abs(vx) >= abs(vy):
        return ("right" if vx > 0 else "left"), vx, vy
    return ("down" if vy > 0 else "up"), vx, vy


def measure(clip):
    """clip [3, F, H, W] in [-1, 1] (numpy or torch) -> dict with
    objects: [{colour, direction, votes, vx, vy}] (most votes first), colour, direction (of
    objects[0], or None), mean_colour (nearest bright colour to the mean of all moving bright
    pixels), bg (background colour name)."""
    x = np.asarray(clip.detach().cpu() if hasattr(clip, "detach") else clip, np.float32)
    rgb = np.clip((x.transpose(1, 2, 3, 0) + 1) / 2, 0, 1)               # [F, H, W, 3]
    near = _nearest(rgb)                                                  # [F, H, W]
    bright = near < _NOBJ
    moving = (rgb.max(0) - rgb.min(0)).max(-1) > MOVE_THR                 # [H, W]
    cand = bright & moving[None]
    votes = np.bincount(near[cand], minlength=_NOBJ)[:_NOBJ]
    objects = []
    if votes.max() >= MIN_VOTES:
        for c in np.argsort(-votes, kind="stable"):
            if votes[c] < max(MIN_VOTES, MIN_FRAC * votes.max()):
                break
            obj = np.stack([largest_component(m) for m in (near == c)])
            d, vx, vy = track_direction(obj)
            objects.append({"colour": OBJ_COLOURS[c][0], "direction": d, "votes": int(votes[c]),
                            "vx": round(vx, 3), "vy": round(vy, 3)})
    mean_colour = None
    if cand.sum() >= MIN_VOTES:
        m = rgb[cand].mean(0)
        mean_colour = OBJ_COLOURS[int(((OBJ_RGB - m) ** 2).sum(-1).argmin())][0]
    static = np.median(rgb, axis=0)                                       # [H, W, 3]
    bgpix = static[~bright.any(0)]
    bg = None
    if len(bgpix):
        d = ((bgpix[:, None, :] - _PAL[_NOBJ:]) ** 2).sum(-1).argmin(-1)
        names = [_BG_NAME_OF[i] for i in d]
        bg = max(set(names), key=names.count)
    return {"objects": objects,
            "colour": objects[0]["colour"] if objects else None,
            "direction": objects[0]["direction"] if objects else None,
            "mean_colour": mean_colour, "bg": bg}


def expected(p, i):
    """What clip i of a data.py parameter batch should show: list of (colour, direction) per object
    in caption order, and the background colour name."""
    objs = [(OBJ_COLOURS[p["colour"][i, k]][0], DIRECTIONS[p["direction"][i, k]][0])
            for k in range(int(p["n_obj"][i]))]
    return objs, BG_COLOURS[p["bg"][i]][0]
