"""Framing between the client, the sandbox server and its job processes.

A frame is ``[4-byte big-endian header length][UTF-8 JSON header][blob bytes ...]``; the
header's ``"blobs"`` lists the byte length of each blob that follows. Arrays travel as blobs
described by ``{"blob": i, "dtype": ..., "shape": [...]}`` with a small whitelist of dtypes.

No pickle anywhere: a job process runs untrusted code, so everything it sends back is parsed
as data with size limits and type checks, never executed.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

import numpy as np

MAX_HEADER = 4 * 1024 * 1024
DTYPES = ("<f4", "<f8", "<u4", "<i4", "<i8", "|u1")


class WireError(ValueError):
    """A malformed frame (wrong framing, bad JSON, sizes over the limit, bad array spec)."""


def encode_frame(header: dict[str, Any], blobs: list[bytes] = ()) -> bytes:
    header = dict(header, blobs=[len(b) for b in blobs])
    head = json.dumps(header, separators=(",", ":"), allow_nan=True).encode("utf-8")
    return b"".join([struct.pack(">I", len(head)), head, *blobs])


def _parse_header(head: bytes) -> dict[str, Any]:
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WireError(f"frame header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise WireError("frame header is not an object")
    sizes = header.get("blobs", [])
    if not isinstance(sizes, list) or not all(type(n) is int and n >= 0 for n in sizes):
        raise WireError("frame header has a bad 'blobs' list")
    return header


def decode_frame(data: bytes, max_blob_bytes: int) -> tuple[dict[str, Any], list[bytes]]:
    """Split a whole frame held in memory (what a job process wrote)."""
    if len(data) < 4:
        raise WireError(f"frame too short ({len(data)} bytes)")
    (n,) = struct.unpack(">I", data[:4])
    if n > MAX_HEADER or 4 + n > len(data):
        raise WireError(f"frame header length {n} is invalid for a {len(data)}-byte frame")
    header = _parse_header(data[4 : 4 + n])
    sizes = header.get("blobs", [])
    if sum(sizes) > max_blob_bytes or 4 + n + sum(sizes) != len(data):
        raise WireError("frame blob sizes do not match the data")
    blobs, pos = [], 4 + n
    for size in sizes:
        blobs.append(data[pos : pos + size])
        pos += size
    return header, blobs


def _read_exactly(fp: IO[bytes], n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = fp.read(n - got)
        if not chunk:
            raise EOFError(f"stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fp: IO[bytes], max_blob_bytes: int) -> tuple[dict[str, Any], list[bytes]]:
    """Read one frame from a stream; EOFError at a clean end of stream."""
    first = fp.read(4)
    if not first:
        raise EOFError("end of stream")
    first += _read_exactly(fp, 4 - len(first)) if len(first) < 4 else b""
    (n,) = struct.unpack(">I", first)
    if n > MAX_HEADER:
        raise WireError(f"frame header of {n} bytes is over the {MAX_HEADER}-byte limit")
    header = _parse_header(_read_exactly(fp, n))
    sizes = header.get("blobs", [])
    if sum(sizes) > max_blob_bytes:
        raise WireError(f"frame blobs of {sum(sizes)} bytes are over the {max_blob_bytes}-byte limit")
    return header, [_read_exactly(fp, size) for size in sizes]


def write_frame(fp: IO[bytes], header: dict[str, Any], blobs: list[bytes] = ()) -> None:
    fp.write(encode_frame(header, blobs))
    fp.flush()


def array_spec(a: np.ndarray, blobs: list[bytes]) -> dict[str, Any]:
    """Append ``a``'s bytes to ``blobs`` and return its description for the header."""
    a = np.ascontiguousarray(a)
    if a.dtype.str not in DTYPES:
        raise WireError(f"dtype {a.dtype.str} cannot be sent")
    blobs.append(a.tobytes())
    return {"blob": len(blobs) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}


def spec_array(spec: Any, blobs: list[bytes]) -> np.ndarray:
    """The array a header spec describes, checked against the blob it points at."""
    if not isinstance(spec, dict):
        raise WireError("array spec is not an object")
    i, dtype, shape = spec.get("blob"), spec.get("dtype"), spec.get("shape")
    if type(i) is not int or not 0 <= i < len(blobs):
        raise WireError(f"array spec points at blob {i!r} of {len(blobs)}")
    if dtype not in DTYPES:
        raise WireError(f"array dtype {dtype!r} is not allowed")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 4:
        raise WireError(f"array shape {shape!r} is invalid")
    dt = np.dtype(dtype)
    if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != len(blobs[i]):
        raise WireError(f"array of shape {shape} and dtype {dtype} does not match its {len(blobs[i])} bytes")
    return np.frombuffer(blobs[i], dtype=dt).reshape(shape).copy()
