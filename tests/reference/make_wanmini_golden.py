"""make_wanmini_golden.py: the golden clip for the wan-mini sampling test (tests/cli/test_wanmini_golden.sh).

The PyTorch reference (wan_ref.py, float64) samples the shipped models/wan-mini with its own
defaults (UniPC, config steps/shift/guidance, CFG against the empty prompt) from seeded noise;
the C test runs astraea-generate --init-noise on the same noise and prompt and compares the final
clips. Regenerate whenever models/wan-mini is retrained:

    /usr/bin/python3 tests/reference/make_wanmini_golden.py
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import st_io  # noqa: E402
import wan_ref  # noqa: E402

PROMPT = "a red circle moves left over a blue background"


def fnv1a64(path):
    h = 0xcbf29ce484222325
    with open(path, "rb") as f:
        data = f.read()
    for b in data:  # small file (5 MB): plain loop is fine
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    folder = os.path.join(ROOT, "models", "wan-mini")
    cj = json.load(open(os.path.join(folder, "config.json")))
    a = cj["astraea"]
    model, _ = wan_ref.load_model(folder, dtype=torch.float64)
    ids = wan_ref.tokenize(PROMPT, a["vocab"])
    ctx = model.text_encoder(ids)[: len(ids)]
    neg = ctx[:0]  # the empty prompt: all-zero context after padding
    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(3, a["frames"], a["height"], a["width"], generator=g).to(torch.float32)
    out = wan_ref.unipc_sample(wan_ref.model_fn_of(model), noise.double(), a["steps"], a["shift"],
                               a["guidance"], ctx, neg)
    if isinstance(out, tuple):
        out = out[0]
    dst = os.path.join(ROOT, "tests", "fixtures", "wanmini")
    os.makedirs(dst, exist_ok=True)
    st_io.save_safetensors(os.path.join(dst, "golden.safetensors"),
                           {"x": noise.contiguous(), "out": out.to(torch.float32).contiguous()})
    meta = {"prompt": PROMPT, "steps": a["steps"], "shift": a["shift"], "guidance": a["guidance"],
            "sampler": "unipc", "noise": "torch.Generator().manual_seed(1234), randn [3,F,H,W] fp32",
            "compute": "float64", "weights_fnv1a64": "%016x" % fnv1a64(
                os.path.join(folder, "diffusion_pytorch_model.safetensors"))}
    json.dump(meta, open(os.path.join(dst, "golden.json"), "w"), indent=1)
    print("wrote", dst, meta)


if __name__ == "__main__":
    main()
