"""The pipe between the trusted grader and its sandboxed child: plain data, never pickle.

A message is a tree of ``None``, bools, ints, floats, strings, lists, tuples and dicts with
string keys, and tensors, NumPy arrays and :class:`torch.Generator` states as leaves. It is
written as one frame::

    b"LAE1" | header length (4 bytes) | blob length (8 bytes) | header (JSON) | blobs

where the JSON header holds the tree with every array replaced by its dtype, shape and place
in the blobs (raw little-endian bytes). Anything else the child returns (a student's own
object, a function) travels as :class:`Opaque`: its type name and a short ``repr``.

The grader decodes what the child sends with :func:`decode` under strict rules: dtypes from
a fixed list, shapes that match the bytes, bounded size, depth and number of nodes; a frame
that breaks them raises :class:`WireError`, and the grader treats the child as broken.
The child is student-controlled: it can send any bytes, and only data ever comes back.
"""
from __future__ import annotations

import json
import math
import os
import select
import struct
import time

import numpy as np

__all__ = ["Opaque", "WireError", "WireClosed", "WireTimeout", "encode", "decode", "write_frame", "read_frame",
           "MAX_FRAME_BYTES"]

MAGIC = b"LAE1"
MAX_FRAME_BYTES = 64 * 1024 * 1024  # a student returning a huge array costs its part, not the grader memory
MAX_DEPTH = 32
MAX_NODES = 200_000
MAX_STRING = 1_000_000

_DTYPES = {  # name on the wire -> (numpy dtype, torch dtype name)
    "float64": ("<f8", "float64"), "float32": ("<f4", "float32"), "float16": ("<f2", "float16"),
    "bfloat16": ("<i2", "bfloat16"),  # the bits, as int16 (NumPy has no bfloat16)
    "int64": ("<i8", "int64"), "int32": ("<i4", "int32"), "int16": ("<i2", "int16"), "int8": ("i1", "int8"),
    "uint8": ("u1", "uint8"), "bool": ("?", "bool"), "complex64": ("<c8", "complex64"),
    "complex128": ("<c16", "complex128"),
}


class WireError(RuntimeError):
    """A frame that breaks the rules (or cannot be encoded)."""


class WireClosed(WireError):
    """The other side closed the pipe (the child ended)."""


class WireTimeout(WireError):
    """No complete frame before the deadline."""


class Opaque:
    """Something that is not plain data (the student's own object): its type's name and a short repr."""

    def __init__(self, type_name: str, text: str = ""):
        self.type_name = str(type_name)[:200]
        self.text = str(text)[:200]

    def __repr__(self):
        return f"<{self.type_name} object>"


# --------------------------------------------------------------------------- encoding
def encode(value) -> tuple[dict, list[bytes]]:
    """(JSON-able tree, blobs) for ``value``."""
    blobs: list[bytes] = []
    tree = _enc(value, blobs, 0)
    return tree, blobs


def _array_leaf(kind: str, arr: np.ndarray, wire_dtype: str, blobs) -> dict:
    # not np.ascontiguousarray: it turns a 0-d array into shape (1,)
    arr = np.asarray(arr)
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    blobs.append(arr.tobytes())
    return {kind: len(blobs) - 1, "dtype": wire_dtype, "shape": list(arr.shape)}


def _enc(v, blobs, depth):
    if depth > MAX_DEPTH:
        return {"O": "nested too deeply", "r": ""}
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**63 else {"O": "int", "r": "an integer too large to send"}
    if isinstance(v, float):
        return v if math.isfinite(v) else {"F": repr(v)}
    if isinstance(v, np.generic):
        return _enc(v.item(), blobs, depth)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(v, torch.Tensor):
        t = v.detach()
        if t.is_sparse or t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().contiguous()
        name = str(t.dtype).replace("torch.", "")
        if name == "bfloat16":
            return _array_leaf("T", t.view(torch.int16).numpy(), "bfloat16", blobs)
        if name not in _DTYPES:
            return {"O": f"tensor of dtype {name}", "r": ""}
        return _array_leaf("T", t.numpy(), name, blobs)
    if torch is not None and isinstance(v, torch.Generator):
        return _array_leaf("G", v.get_state().numpy(), "uint8", blobs)
    if isinstance(v, np.ndarray):
        if v.dtype.name not in _DTYPES or v.dtype.name == "bfloat16":
            return {"O": f"numpy array of dtype {v.dtype}", "r": ""}
        return _array_leaf("A", v.astype(_DTYPES[v.dtype.name][0], copy=False), v.dtype.name, blobs)
    if isinstance(v, tuple):
        return {"t": [_enc(x, blobs, depth + 1) for x in v]}
    if isinstance(v, list):
        return {"l": [_enc(x, blobs, depth + 1) for x in v]}
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v):
            return {"d": [[k, _enc(x, blobs, depth + 1)] for k, x in v.items()]}
        return {"O": "dict", "r": "a dict with keys that are not strings"}
    if isinstance(v, Opaque):
        return {"O": v.type_name, "r": v.text}
    try:
        text = repr(v)[:200]
    except Exception:
        text = ""
    return {"O": type(v).__name__, "r": text}


# --------------------------------------------------------------------------- decoding
def decode(tree, blobs: list[bytes]):
    """The value of an encoded tree; raises :class:`WireError` on anything unexpected."""
    counter = [0]
    return _dec(tree, blobs, 0, counter)


def _dec(node, blobs, depth, counter):
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise WireError("too many values in one message")
    if depth > MAX_DEPTH + 2:
        raise WireError("message nested too deeply")
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, int):
        return node
    if isinstance(node, float):
        return node
    if isinstance(node, str):
        if len(node) > MAX_STRING:
            raise WireError("string too long")
        return node
    if not isinstance(node, dict) or len(node) == 0:
        raise WireError(f"unexpected node {type(node).__name__}")
    if "F" in node:
        text = node["F"]
        if text not in ("nan", "inf", "-inf"):
            raise WireError("bad float")
        return float(text)
    if "t" in node or "l" in node:
        items = node.get("t", node.get("l"))
        if not isinstance(items, list):
            raise WireError("bad sequence")
        out = [_dec(x, blobs, depth + 1, counter) for x in items]
        return tuple(out) if "t" in node else out
    if "d" in node:
        items = node["d"]
        if not isinstance(items, list):
            raise WireError("bad dict")
        out = {}
        for pair in items:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise WireError("bad dict item")
            out[pair[0]] = _dec(pair[1], blobs, depth + 1, counter)
        return out
    if "O" in node:
        return Opaque(str(node.get("O", "object")), str(node.get("r", "")))
    for kind in ("T", "A", "G"):
        if kind in node:
            return _dec_array(kind, node, blobs)
    raise WireError("unknown node")


def _dec_array(kind, node, blobs):
    index, wire_dtype, shape = node.get(kind), node.get("dtype"), node.get("shape")
    if not isinstance(index, int) or not (0 <= index < len(blobs)):
        raise WireError("bad blob index")
    if wire_dtype not in _DTYPES:
        raise WireError(f"dtype {wire_dtype!r} not allowed")
    if not (isinstance(shape, list) and len(shape) <= 16 and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise WireError("bad shape")
    np_dtype = np.dtype(_DTYPES[wire_dtype][0])
    count = 1
    for s in shape:
        count *= s
    raw = blobs[index]
    if count * np_dtype.itemsize != len(raw):
        raise WireError("shape and data do not agree")
    arr = np.frombuffer(raw, dtype=np_dtype).reshape(shape).copy()
    if kind == "A":
        return arr
    import torch

    if kind == "G":
        if wire_dtype != "uint8" or len(shape) != 1:
            raise WireError("bad generator state")
        g = torch.Generator()
        try:
            g.set_state(torch.from_numpy(arr))
        except (RuntimeError, ValueError) as exc:
            raise WireError(f"bad generator state: {exc}") from None
        return g
    t = torch.from_numpy(arr)
    if wire_dtype == "bfloat16":
        t = t.view(torch.bfloat16)
    return t


# ---------------------------------------------------------------------------- frames
def write_frame(fd: int, message) -> None:
    """Write ``message`` (anything :func:`encode` takes) to the file descriptor ``fd``."""
    tree, blobs = encode(message)
    header = json.dumps({"m": tree, "b": [len(b) for b in blobs]}, allow_nan=True).encode()
    body = b"".join(blobs)
    data = MAGIC + struct.pack("<IQ", len(header), len(body)) + header + body
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            raise WireClosed("the other side closed the pipe") from None
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireTimeout("no answer before the deadline")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise WireTimeout("no answer before the deadline")
        try:
            chunk = os.read(fd, min(n - got, 1 << 20))
        except InterruptedError:  # pragma: no cover - retried by Python already
            continue
        if not chunk:
            raise WireClosed("the other side closed the pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None, *, max_bytes: int = MAX_FRAME_BYTES):
    """Read one message from ``fd`` (``deadline``: a ``time.monotonic()`` value, or None to wait)."""
    head = _read_exact(fd, 16, deadline)
    if head[:4] != MAGIC:
        raise WireError("not a frame")
    header_len, body_len = struct.unpack("<IQ", head[4:])
    if header_len > max_bytes or body_len > max_bytes or header_len + body_len > max_bytes:
        raise WireError("frame too large")
    header = _read_exact(fd, header_len, deadline)
    body = _read_exact(fd, body_len, deadline)
    try:
        meta = json.loads(header)
    except (ValueError, UnicodeDecodeError):
        raise WireError("header is not JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("b"), list):
        raise WireError("bad header")
    sizes = meta["b"]
    if not all(isinstance(s, int) and s >= 0 for s in sizes) or sum(sizes) != len(body):
        raise WireError("blob sizes do not agree")
    blobs, offset = [], 0
    for s in sizes:
        blobs.append(body[offset:offset + s])
        offset += s
    return decode(meta.get("m"), blobs)
