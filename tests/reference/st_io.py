"""st_io.py — a small, dependency-free safetensors reader/writer (wan21.md §5) for the offline
reference scripts. Needs only torch (any version >= 1.10) and the standard library; runs on the
CPU test machine (torch 1.13) and the GPU machine (torch 2.x) alike.

Format: u64 little-endian header length N, then N bytes of UTF-8 JSON (padded with spaces to a
multiple of 8), then the data buffer. Each tensor entry is
{"dtype": DT, "shape": [...], "data_offsets": [begin, end]} relative to the buffer start.

    load_safetensors(path) -> {name: torch.Tensor}        (F32/F64/F16/BF16/I64/I32/I16/I8/U8/BOOL)
    load_metadata(path)    -> {str: str}                  ("__metadata__", or {})
    save_safetensors(path, {name: tensor}, metadata=None)  (atomic: temp file + rename)
"""
import json
import os
import struct

import torch

MAX_HEADER = 100_000_000  # same limit as the reference reader (tensor.rs MAX_HEADER_SIZE)

# dtype string <-> (torch dtype, element size). BF16 is read through int16 and re-viewed so it
# does not depend on numpy (which has no bfloat16).
_DT = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
_DT_OF_TORCH = {v[0]: k for k, v in _DT.items()}
# Same-size integer carrier used to move raw bytes in and out of each dtype.
_CARRIER = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _read_header(f, path, file_size):
    raw = f.read(8)
    if len(raw) != 8:
        raise ValueError(f"{path}: file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw)
    if n > MAX_HEADER or 8 + n > file_size:
        raise ValueError(f"{path}: header length {n} is too large for a {file_size}-byte file")
    header = json.loads(f.read(n).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    return n, header


def load_metadata(path):
    with open(path, "rb") as f:
        _, header = _read_header(f, path, os.path.getsize(path))
    return dict(header.get("__metadata__", {}) or {})


def load_safetensors(path):
    """Reads every tensor of one file, validating offsets as the reference reader does."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        n, header = _read_header(f, path, file_size)
        data = f.read()
    entries = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = e["dtype"]
        if dt not in _DT:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        begin, end = (int(v) for v in e["data_offsets"])
        shape = [int(d) for d in e["shape"]]
        if end - begin != _numel(shape) * _DT[dt][1]:
            raise ValueError(f"{path}: tensor {name}: {end - begin} bytes for shape {shape} {dt}")
        entries.append((begin, end, name, dt, shape))
    entries.sort()
    pos = 0
    for begin, end, name, _, _ in entries:
        if begin != pos:
            raise ValueError(f"{path}: tensor {name}: data_offsets leave a gap or overlap at {pos}")
        pos = end
    if 8 + n + pos != file_size:
        raise ValueError(f"{path}: data buffer is {file_size - 8 - n} bytes, tensors cover {pos}")
    out = {}
    for begin, end, name, dt, shape in entries:
        tdtype, size = _DT[dt]
        if end == begin:
            out[name] = torch.zeros(shape, dtype=tdtype)
            continue
        # bytearray copy: torch.frombuffer needs a writable buffer to avoid a warning.
        buf = bytearray(data[begin:end])
        t = torch.frombuffer(buf, dtype=_CARRIER[size]).clone()
        if tdtype is torch.bool:
            t = t.to(torch.bool)
        elif tdtype is not _CARRIER[size]:
            t = t.view(tdtype)
        out[name] = t.reshape(shape)
    return out


def _tensor_bytes(t):
    t = t.detach().to("cpu").contiguous()
    if t.dtype is torch.bool:
        t = t.to(torch.uint8)
    size = _DT[_DT_OF_TORCH[t.dtype]][1] if t.dtype is not torch.uint8 else 1
    return t.reshape(-1).view(_CARRIER[size]).numpy().tobytes()


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} to path. Order follows the reference writer: dtype size descending,
    then name, so every tensor starts aligned to its element size. metadata: {str: str}."""
    items = []
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: not a torch.Tensor")
        if t.dtype not in _DT_OF_TORCH:
            raise ValueError(f"{name}: dtype {t.dtype} not supported")
        items.append((-_DT[_DT_OF_TORCH[t.dtype]][1], name, t))
    items.sort(key=lambda it: (it[0], it[1]))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    pos = 0
    for _, name, t in items:
        b = _tensor_bytes(t)
        header[name] = {"dtype": _DT_OF_TORCH[t.dtype], "shape": list(t.shape),
                        "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
