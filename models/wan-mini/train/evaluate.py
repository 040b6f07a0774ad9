"""evaluate.py: evidence that wan-mini learned its captions.

Renders held-out prompts (combinations of colour / shape / direction / background colour that
data.py never trains on) and measures from the frames (measure.py) whether each clip shows its
caption: colour of the moving object, direction of its motion, background colour.

Two ways to render:
  * PyTorch (default): WanModel + unipc_sample from tests/reference/wan_ref.py, with steps, shift
    and guidance from the model's config.json (override with --steps/--shift/--guidance);
  * --astraea-generate PATH: the C tool, once per prompt:
        PATH --model wan-mini --prompt "..." --seed S --out clip.safetensors   (tensor "x" [3,8,32,32])
    (--model-arg overrides "wan-mini", e.g. with a folder; --extra-arg adds arguments.)

Before judging a model, the measurement itself is validated on ground-truth clips from data.py
(--validate): random training-distribution clips (1 and 2 objects) and the ground-truth renders
of the evaluation prompts. Both should be ~100 %.

    python3 evaluate.py --model models/wan-mini --out /tmp/eval            # model, PyTorch sampler
    python3 evaluate.py --validate-only --out /tmp/eval                    # measurement check only
Writes OUT/results.json (per-prompt rows + summary), OUT/samples.png (first 16 clips, one row each,
with the ground-truth render of the same prompt in the row below) and, with --save-clips,
OUT/clips.npy.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)

import data  # noqa: E402
from measure import expected, measure  # noqa: E402


def eval_prompts(n, seed=2024):
    """n prompts (single object) from the held-out tuples, each tuple at most once while n <= 160;
    texture, size and speed words drawn at random. Returns (prompts, parameter batch)."""
    rng = np.random.default_rng(seed)
    tuples = data.held_out_tuples()
    order = rng.permutation(len(tuples))
    order = np.concatenate([order] * (n // len(tuples) + 1))[:n]
    p = data.ClipGenerator(seed=seed, max_objects=1, allow_held_out=True).sample(n)
    for i, j in enumerate(order):
        c, s, d, b = tuples[j]
        p["colour"][i, 0], p["shape"][i, 0], p["direction"][i, 0], p["bg"][i] = c, s, d, b
    p["captions"] = [" ".join(data.caption_words(p, i)) for i in range(n)]
    p["ids"], p["lens"] = data.caption_ids(p)
    return p["captions"], p


def score(clips, p):
    """Measure every clip against parameter batch p -> (rows, summary)."""
    rows = []
    for i in range(len(clips)):
        m = measure(clips[i])
        objs, bg = expected(p, i)
        got = {o["colour"]: o["direction"] for o in m["objects"]}
        row = {"i": i, "prompt": p["captions"][i], "n_obj": len(objs),
               "want_colour": objs[0][0], "want_direction": objs[0][1], "want_bg": bg,
               "colour": m["colour"], "direction": m["direction"], "mean_colour": m["mean_colour"],
               "bg": m["bg"], "objects": m["objects"]}
        row["colour_ok"] = m["colour"] == objs[0][0]
        row["direction_ok"] = row["colour_ok"] and m["direction"] == objs[0][1]
        row["direction_ok_any"] = m["direction"] == objs[0][1]
        row["bg_ok"] = m["bg"] == bg
        # multi-object clips: every captioned object found (by colour) with its direction
        row["all_objects_ok"] = all(got.get(c) == d for c, d in objs)
        rows.append(row)
    return rows, summarize(rows)


def summarize(rows):
    def acc(key, rs):
        return round(float(np.mean([r[key] for r in rs])), 4) if rs else None
    one = [r for r in rows if r["n_obj"] == 1]
    two = [r for r in rows if r["n_obj"] > 1]
    s = {"n": len(rows), "n_single": len(one), "n_multi": len(two)}
    if one:
        s.update({"colour_acc": acc("colour_ok", one),
                  "direction_acc": acc("direction_ok_any", one),
                  "colour_and_direction_acc": acc("direction_ok", one),
                  "mean_colour_acc": round(float(np.mean([r["mean_colour"] == r["want_colour"] for r in one])), 4),
                  "bg_acc": acc("bg_ok", one)})
    if two:
        s["multi_all_objects_acc"] = acc("all_objects_ok", two)
        s["multi_bg_acc"] = acc("bg_ok", two)
    return s


def validate(n_random, prompts_p, device="cpu"):
    """Measurement check on ground truth: random clips (1 and 2 objects) and eval-prompt renders."""
    p = data.ClipGenerator(seed=777, allow_held_out=True).sample(n_random)
    x = data.render(p, device).cpu()
    _, s_random = score(x, p)
    xg = data.render(prompts_p, device).cpu()
    rows, s_prompts = score(xg, prompts_p)
    return {"random_clips": s_random, "eval_prompts_ground_truth": s_prompts}, xg, rows


# ----------------------------------------------------------------------------- renderers

class TorchRenderer:
    """WanModel + unipc_sample from tests/reference/wan_ref.py (through modelio)."""

    def __init__(self, model_dir, device, steps=None, shift=None, guidance=None, batch=64):
        import modelio
        self.modelio = modelio
        self.model, self.cfg = modelio.load_model(model_dir, device)
        a = self.cfg.get("astraea", {})
        self.steps = steps or a.get("steps", 20)
        self.shift = shift if shift is not None else a.get("shift", 3.0)
        self.guidance = guidance if guidance is not None else a.get("guidance", 5.0)
        self.sampler = a.get("sampler", "unipc")
        self.device, self.batch = device, batch

    def render(self, prompts, seeds):
        out = []
        for k in range(0, len(prompts), self.batch):
            out.append(self.modelio.sample(self.model, self.cfg, prompts[k:k + self.batch],
                                           seeds[k:k + self.batch], self.steps, self.shift,
                                           self.guidance, self.device, self.sampler).cpu())
        return torch.cat(out)


class CliRenderer:
    """The C tool: PATH --model M --prompt P --seed S --out clip.safetensors."""

    def __init__(self, exe, model_arg="wan-mini", extra=()):
        self.exe, self.model_arg, self.extra = exe, model_arg, list(extra)

    def render(self, prompts, seeds):
        sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
        from st_io import load_safetensors
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            for prompt, seed in zip(prompts, seeds):
                path = os.path.join(tmp, "clip.safetensors")
                cmd = [self.exe, "--model", self.model_arg, "--prompt", prompt, "--seed", str(seed),
                       "--out", path] + self.extra
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
                x = load_safetensors(path)["x"].float()
                if tuple(x.shape) != (3, data.FRAMES, data.HEIGHT, data.WIDTH):
                    raise RuntimeError(f"{path}: x has shape {list(x.shape)}, want [3, 8, 32, 32]")
                out.append(x)
        return torch.stack(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "wan-mini"),
                    help="folder with config.json + diffusion_pytorch_model.safetensors")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, default=64, help="evaluation prompts (>= 50 for the targets)")
    ap.add_argument("--seed", type=int, default=0, help="first sampling seed (prompt i uses seed+i)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int), ap.add_argument("--shift", type=float)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--batch", type=int, default=64, help="prompts per sampler batch (PyTorch)")
    ap.add_argument("--astraea-generate", metavar="PATH", help="render with the C tool instead")
    ap.add_argument("--model-arg", default="wan-mini", help="--model value passed to the C tool")
    ap.add_argument("--extra-arg", action="append", default=[], help="extra argument for the C tool")
    ap.add_argument("--validate-n", type=int, default=1000, help="random ground-truth clips to check")
    ap.add_argument("--validate-only", action="store_true", help="only check the measurement")
    ap.add_argument("--save-clips", action="store_true", help="also write clips.npy [n, 3, 8, 32, 32]")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)

    prompts, p = eval_prompts(a.n)
    t0 = time.time()
    val, gt, _ = validate(a.validate_n, p)
    print(f"measurement on ground truth ({time.time() - t0:.1f}s): {json.dumps(val)}")
    result = {"validation": val, "n_prompts": a.n}
    if not a.validate_only:
        seeds = [a.seed + i for i in range(a.n)]
        if a.astraea_generate:
            r = CliRenderer(a.astraea_generate, a.model_arg, a.extra_arg)
            result["renderer"] = {"kind": "astraea-generate", "exe": a.astraea_generate, "model": a.model_arg}
        else:
            r = TorchRenderer(a.model, a.device, a.steps, a.shift, a.guidance, a.batch)
            result["renderer"] = {"kind": "pytorch", "model": a.model, "steps": r.steps,
                                  "shift": r.shift, "guidance": r.guidance, "device": a.device}
        t0 = time.time()
        clips = r.render(prompts, seeds).float().clamp(-1, 1)
        result["render_seconds"] = round(time.time() - t0, 2)
        rows, summary = score(clips, p)
        result["summary"] = summary
        result["targets"] = {"colour_acc": 0.80, "direction_acc": 0.70, "met": bool(
            summary["colour_acc"] >= 0.80 and summary["direction_acc"] >= 0.70 and a.n >= 50)}
        result["rows"] = rows
        if a.save_clips:
            np.save(os.path.join(a.out, "clips.npy"), clips.numpy())
        k = min(16, a.n)
        inter = np.stack([clips[:k].numpy(), gt[:k].numpy()], 1).reshape(2 * k, *clips.shape[1:])
        data.write_png(os.path.join(a.out, "samples.png"), data.clip_sheet(inter, scale=2))
        print(f"rendered {a.n} prompts in {result['render_seconds']}s: {json.dumps(summary)}")
        print(f"targets (colour >= 0.80, direction >= 0.70): {'MET' if result['targets']['met'] else 'NOT met'}")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {a.out}/results.json" + ("" if a.validate_only else ", samples.png")
          + (", clips.npy" if a.save_clips and not a.validate_only else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
