#!/usr/bin/env python3
"""make_corpus.py — writes the seed corpora of the libFuzzer targets (tests/fuzz/corpus/<target>/).

Small inputs that reach each reader's paths: valid files of every shape the reader accepts, and
near-misses of each rule it checks. Offline script (Python is never in a user's run path); run it
again after changing it: python3 tests/fuzz/make_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors -------------------------------------------------------------------------------
SIZES = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4}


def st(tensors, meta=None, pad=True, header_override=None, extra=b""):
    """tensors: list of (name, dtype, shape); data is a byte pattern."""
    h, off, data = {}, 0, b""
    if meta is not None:
        h["__metadata__"] = meta
    for name, dt, shape in tensors:
        n = SIZES.get(dt, 4)
        for s in shape:
            n *= s
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        data += bytes((i * 37 + 11) & 0xFF for i in range(off, off + n))
        off += n
    hb = header_override if header_override is not None else json.dumps(h).encode()
    if pad:
        hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data + extra


out("safetensors", "one_f32", st([("x", "F32", [2, 3])]))
out("safetensors", "all_dtypes", st([("a", "F32", [2]), ("b", "BF16", [3]), ("c", "F16", [1, 2]),
                                     ("d", "I64", [1]), ("e", "I32", [2, 1])]))
out("safetensors", "metadata", st([("w", "BF16", [4])], meta={"format": "pt", "k": "v"}))
out("safetensors", "scalar_and_empty", st([("s", "F32", []), ("z", "F32", [0, 5]), ("t", "F16", [1])]))
out("safetensors", "unaligned", st([("odd", "BF16", [3]), ("f", "F32", [2])], pad=False))
out("safetensors", "empty_header", st([], header_override=b"{}"))
out("safetensors", "unicode_name", st([("bl\u00f6cks.0.\u00e9", "F32", [1])]))
out("safetensors", "many_dims", st([("m", "F16", [1, 1, 1, 1, 1, 1, 1, 2])]))
out("safetensors", "wan_like", st([("patch_embedding.weight", "BF16", [4, 2, 1, 2, 2]),
                                   ("patch_embedding.bias", "BF16", [4]),
                                   ("blocks.0.self_attn.q.weight", "BF16", [4, 4]),
                                   ("head.modulation", "F32", [1, 2, 4])]))
out("safetensors", "trailing_bytes", st([("x", "F32", [1])], extra=b"\0\0\0\0"))
out("safetensors", "bad_utf8", st([], header_override=b'{"\xff": 1}'))
out("safetensors", "bad_dtype", st([("x", "Q8", [2])]))
out("safetensors", "gap", struct.pack("<Q", 8) + b'{"a":{}}')
out("safetensors", "short", b"\x10\0\0\0")
out("safetensors", "huge_len", struct.pack("<Q", 100000001) + b"{}")
two = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                  "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}).encode()
out("safetensors", "overlap", struct.pack("<Q", len(two)) + two + b"\0" * 6)

# ---- config.json (the fuzz target's checkpoint: dim 8, 2 heads, 2 layers, ffn 16, freq 8,
# text_dim 8, text_len 4, in/out 4, patch (1,2,2), 3-word text encoder) -----------------------------
tiny = {"dim": 8, "ffn_dim": 16, "num_heads": 2, "num_layers": 2, "freq_dim": 8, "text_dim": 8,
        "text_len": 4, "in_dim": 4, "out_dim": 4, "patch_size": [1, 2, 2], "eps": 1e-6,
        "model_type": "t2v", "astraea": {"model_id": "tiny", "vocab": ["a", "red", "ball"],
                                         "frames": 2, "height": 4, "width": 4, "steps": 3,
                                         "shift": 3.0, "guidance": 5.0}}
out("config", "tiny_full", json.dumps(tiny, indent=1))
out("config", "tiny_minimal", json.dumps({"num_heads": 2, "astraea": {"vocab": ["a", "red", "ball"]}}))
diff = {"_class_name": "WanTransformer3DModel", "num_attention_heads": 2, "attention_head_dim": 4,
        "in_channels": 4, "out_channels": 4, "num_layers": 2, "ffn_dim": 16, "freq_dim": 8,
        "text_dim": 8, "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads",
        "cross_attn_norm": True, "eps": 1e-06, "image_dim": None, "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024, "astraea": {"vocab": ["a", "red", "ball"]}}
out("config", "tiny_diffusers", json.dumps(diff))
out("config", "head_dim_only", json.dumps({"attention_head_dim": 4, "astraea": {"vocab": ["a", "red", "ball"]}}))
out("config", "wan13b", json.dumps({"_class_name": "WanModel", "model_type": "t2v", "dim": 1536,
                                    "ffn_dim": 8960, "num_heads": 12, "num_layers": 30,
                                    "freq_dim": 256, "text_dim": 4096, "text_len": 512,
                                    "in_dim": 16, "out_dim": 16, "patch_size": [1, 2, 2],
                                    "window_size": [-1, -1], "qk_norm": True,
                                    "cross_attn_norm": True, "eps": 1e-06}))
out("config", "i2v", json.dumps({"model_type": "i2v", "dim": 8}))
out("config", "image_dim", json.dumps({"num_heads": 2, "image_dim": 1280}))
out("config", "contradiction", json.dumps({"dim": 8, "num_attention_heads": 2, "attention_head_dim": 8,
                                           "in_dim": 4, "in_channels": 5}))
out("config", "bad_vocab", json.dumps({"num_heads": 2, "astraea": {"vocab": ["a", "Red", "a"]}}))
out("config", "not_object", "[1, 2, 3]")
with open(os.path.join(ROOT, "models", "wan-mini", "config.json"), "rb") as f:
    out("config", "wan_mini", f.read())

# ---- profiles ----------------------------------------------------------------------------------
full = {"format_version": 1, "model_id": "wan-mini", "checkpoint_hash": "23c9ecb87d6665b7",
        "latent": {"frames": 8, "height": 32, "width": 32},
        "pixels": {"frames": 8, "height": 32, "width": 32}, "steps": 6, "sampler": "unipc",
        "shift": 3, "guidance": 5, "budgets": [1, 0.8, 0.7, 0.6, 0.45, 0.3],
        "measured_speedup": 2.03, "predicted_speedup": 2.016,
        "quality": {"mse": 0.00153, "psnr": 31.2, "ssim": 0.962},
        "tokenwise": {"w_alpha": 1, "w_beta": 0.5, "cache": "residual", "delta_normalize": 1,
                      "sketch_dim": 32},
        "device": "cpu (2 threads)", "run_id": 1, "date": "2026-11-27T13:52:15Z",
        "search_cost": {"evaluations": 950, "device_seconds": 412.5}}
out("profile", "full", json.dumps(full, indent="\t"))
out("profile", "minimal", '{"budgets": [1, 0.4, 0.4, 0.3, 0.3]}')
out("profile", "nulls", json.dumps({"format_version": 1, "model_id": "custom", "checkpoint_hash": None,
                                    "steps": 2, "shift": None, "guidance": None, "budgets": [1, 0],
                                    "measured_speedup": None, "quality": {"mse": 0, "psnr": None,
                                                                          "ssim": None}}))
out("profile", "euler_output", json.dumps({"format_version": 1, "model_id": "wan2.1-t2v-1.3b", "steps": 3,
                                           "sampler": "euler", "budgets": [1, 1e-3, 0.5],
                                           "tokenwise": {"w_alpha": 0, "w_beta": 2.5, "cache": "output",
                                                         "delta_normalize": 0, "sketch_dim": 0}}))
out("profile", "newer", '{"format_version": 2, "model_id": "x", "steps": 1, "budgets": [1]}')
out("profile", "bad_first", '{"budgets": [0.5, 1]}')
out("profile", "dup", '{"budgets": [1], "budgets": [1]}')
out("profile", "unknown_field", '{"budget": [1]}')
out("profile", "steps_mismatch", '{"format_version": 1, "model_id": "m", "steps": 3, "budgets": [1, 1]}')

# ---- prompts (wan-mini's vocabulary) -------------------------------------------------------------
out("prompt", "caption", "a red circle moves left over a blue background")
out("prompt", "punct_case", "A Small, GREEN square... moves QUICKLY up!\tover\na black background")
out("prompt", "unknown", "a red dragon moves left")
out("prompt", "empty", "")
out("prompt", "utf8", "a r\u00e9d circle \u2014 moves")
out("prompt", "long", " ".join(["a red circle moves left"] * 5))
out("prompt", "long_word", "a" * 80)
