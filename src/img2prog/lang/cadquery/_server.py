"""The sandbox server: imports CadQuery once, then forks one confined process per job.

Run as ``python -m img2prog.lang.cadquery._server`` by :class:`~.sandbox.Executor`; it talks
frames (:mod:`._wire`) over stdin/stdout. Requests::

    {"job": {"items": [{"script": str, "checked": bool} | {"brep": blob index}, ...],
             "mesh": bool, "brep": bool, "iou": bool, "normalize": bool, "tolerance": float},
     "limits": {"cpu_s", "wall_s", "memory_mb", "file_mb", "max_output_mb", "require": [...]}}

A response is the job process's own header (``ok``, ``error``, ``memory_exceeded``, per-item
``items`` with properties and array specs, ``iou``, ``sandbox`` flags) plus what only the
server can know: ``timeout``, ``crashed``, ``exit`` and ``wall_s``. The server never trusts
the job process: a missing, oversized or malformed result is reported as an error.
"""

from __future__ import annotations

import builtins
import io
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

import numpy as np

from img2prog.lang.cadquery._wire import (
    WireError,
    array_spec,
    decode_frame,
    encode_frame,
    read_frame,
    write_frame,
)
from img2prog.lang.cadquery.geometry import normalization

MAX_REQUEST_BYTES = 512 * 1024 * 1024
_ALLOWED_IMPORTS = ("cadquery", "math")


# --------------------------------------------------------------------------------------
# Inside the job process.
# --------------------------------------------------------------------------------------


def _limited_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level != 0 or name not in _ALLOWED_IMPORTS:
        raise ImportError(f"import of {name!r} is not allowed")
    return builtins.__import__(name, globals, locals, fromlist, level)


def _namespace(checked: bool) -> dict[str, Any]:
    """Globals for the script: a validated script gets no builtins but a two-module import."""
    if checked:
        return {"__builtins__": {"__import__": _limited_import}, "__name__": "__cadquery_script__"}
    return {"__builtins__": builtins, "__name__": "__main__"}


def _shape_from_value(value: Any, cq) -> Any:
    if isinstance(value, cq.Workplane):
        solids = [s for s in value.solids().vals() if isinstance(s, cq.Solid)]
    elif isinstance(value, cq.Shape):
        solids = list(value.Solids())
    else:
        raise TypeError(f"the part variable holds a {type(value).__name__}, not a CadQuery solid")
    if not solids:
        raise ValueError("the script produced no solid")
    return solids[0] if len(solids) == 1 else cq.Compound.makeCompound(solids)


def _build(item: dict[str, Any], blobs: list[bytes], cq) -> Any:
    if "brep" in item:
        return cq.Shape.importBrep(io.BytesIO(blobs[item["brep"]]))
    ns = _namespace(bool(item.get("checked", True)))
    exec(compile(item["script"], "<cadquery script>", "exec"), ns)
    for name in ("solid", "result"):
        if name in ns:
            return _shape_from_value(ns[name], cq)
    raise NameError("the script defines no 'solid' (or 'result') variable")


def _props(shape) -> dict[str, Any]:
    bb = shape.BoundingBox()
    return {
        "volume": float(shape.Volume()),
        "area": float(shape.Area()),
        "bbox": [bb.xmin, bb.ymin, bb.zmin, bb.xmax, bb.ymax, bb.zmax],
        "solids": len(shape.Solids()),
        "faces": len(shape.Faces()),
        "valid": bool(shape.isValid()),
    }


def _mesh(shape, rel_tolerance: float, angular: float, blobs: list[bytes]) -> dict[str, Any]:
    bb = shape.BoundingBox()
    tol = max(rel_tolerance * bb.DiagonalLength, 1e-7)
    verts, tris = shape.tessellate(tol, angular)
    v = np.array([p.toTuple() for p in verts], dtype=np.float32).reshape(-1, 3)
    t = np.array(tris, dtype=np.uint32).reshape(-1, 3)
    return {"vertices": array_spec(v, blobs), "triangles": array_spec(t, blobs)}


def _normalized(shape, cq):
    bb = shape.BoundingBox()
    centre, scale = normalization((bb.xmin, bb.ymin, bb.zmin, bb.xmax, bb.ymax, bb.zmax))
    return shape.translate(cq.Vector(*(-centre))).scale(scale)


def _is_oom(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}"
    return isinstance(e, MemoryError) or "OutOfMemory" in text or "bad_alloc" in text


def _run_job(job: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    import cadquery as cq

    out_blobs: list[bytes] = []
    items, shapes = [], []
    for i, item in enumerate(job["items"]):
        name = item.get("name", f"item {i}")
        try:
            shape = _build(item, blobs, cq)
            props = _props(shape)
            if not props["valid"]:
                raise ValueError("the solid is not valid (OCC BRepCheck failed)")
            if not props["volume"] > 1e-12:
                raise ValueError(f"the solid has no volume ({props['volume']:.3g})")
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt,)):
                raise
            message = f"{name}: {type(e).__name__}: {e}"
            return {"ok": False, "error": message[:4000], "memory_exceeded": _is_oom(e), "failed_item": i}, []
        if job.get("mesh"):
            props["mesh"] = _mesh(shape, float(job.get("tolerance", 2e-3)), float(job.get("angular_tolerance", 0.3)),
                                  out_blobs)
        if job.get("brep"):
            buf = io.BytesIO()
            shape.exportBrep(buf)
            props["brep"] = array_spec(np.frombuffer(buf.getvalue(), dtype=np.uint8), out_blobs)
        items.append(props)
        shapes.append(shape)
    header: dict[str, Any] = {"ok": True, "error": None, "memory_exceeded": False, "items": items}
    if job.get("iou") and len(shapes) == 2:
        a, b = shapes
        if job.get("normalize", True):
            a, b = _normalized(a, cq), _normalized(b, cq)
        va, vb = a.Volume(), b.Volume()
        vi = a.intersect(b).Volume() if va > 0 and vb > 0 else 0.0
        union = va + vb - vi
        header["iou"] = float(min(max(vi / union, 0.0), 1.0)) if union > 0 else 0.0
        header["intersection_volume"] = float(vi)
    return header, out_blobs


#: sandbox layers that worked in the start-up probe; every job then requires them
_AVAILABLE: tuple[str, ...] = ()


def _child(fd: int, workdir: str, job: dict[str, Any], blobs: list[bytes], limits: dict[str, Any]) -> None:
    from img2prog.lang.cadquery._confine import ConfinementError, confine

    require = tuple(sorted(set(limits.get("require", ("limits", "syscalls"))) | set(_AVAILABLE)))
    try:
        flags = confine(
            workdir, fd, cpu_s=float(limits["cpu_s"]), memory_mb=int(limits["memory_mb"]),
            file_mb=int(limits.get("file_mb", 16)), require=require,
        )
    except (ConfinementError, OSError) as e:
        header, out = {"ok": False, "error": f"sandbox setup failed: {e}", "memory_exceeded": False}, []
        flags = {}
    else:
        try:
            header, out = _run_job(job, blobs)
        except MemoryError:
            header, out = {"ok": False, "error": "memory limit exceeded", "memory_exceeded": True}, []
        except BaseException as e:  # a bug in the job code itself
            header, out = {"ok": False, "error": f"job failed: {type(e).__name__}: {e}", "memory_exceeded": False}, []
    header["sandbox"] = flags
    try:
        data = encode_frame(header, out)
    except (MemoryError, ValueError) as e:
        data = encode_frame({"ok": False, "error": f"result could not be encoded: {type(e).__name__}",
                             "memory_exceeded": isinstance(e, MemoryError), "sandbox": flags})
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# --------------------------------------------------------------------------------------
# In the server.
# --------------------------------------------------------------------------------------


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):  # the job leads its own process group after setsid
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def _collect(fd: int, pid: int, deadline: float, max_bytes: int) -> tuple[bytes, int, float, str | None]:
    """Read the job's result until EOF and reap it, killing it at the deadline."""
    chunks: list[bytes] = []
    total = 0
    killed: str | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            killed = "wall"
            _kill(pid)
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            killed = "output"
            _kill(pid)
            break
        chunks.append(chunk)
    os.close(fd)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            killed = killed or "wall"
            _kill(pid)
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.0005)
    return b"".join(chunks), status, usage.ru_utime + usage.ru_stime, killed


def run_request(header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    limits = header["limits"]
    workdir = tempfile.mkdtemp(prefix="img2prog-cq-")
    start = time.monotonic()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the job process
        code = 0
        try:
            os.close(r)
            _child(w, workdir, header["job"], blobs, limits)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(w)
    max_bytes = int(limits.get("max_output_mb", 256)) * 1024 * 1024
    data, status, cpu, killed = _collect(r, pid, start + float(limits["wall_s"]), max_bytes)
    wall = time.monotonic() - start
    shutil.rmtree(workdir, ignore_errors=True)

    response: dict[str, Any]
    out: list[bytes] = []
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    base = {"ok": False, "memory_exceeded": False, "timeout": False, "crashed": False}
    if killed == "wall":
        response = dict(base, timeout=True, error=f"wall-clock limit of {limits['wall_s']} s exceeded")
    elif killed == "output":
        response = dict(base, error=f"result larger than {limits.get('max_output_mb', 256)} MB")
    elif sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= float(limits["cpu_s"]) - 0.05):
        response = dict(base, timeout=True, error=f"CPU-time limit of {limits['cpu_s']} s exceeded")
    elif sig == signal.SIGKILL:  # not us, not the CPU limit: the kernel's out-of-memory killer
        response = dict(base, memory_exceeded=True, error="killed (SIGKILL), most likely out of memory")
    elif sig == signal.SIGXFSZ:
        response = dict(base, error=f"file-size limit of {limits.get('file_mb', 16)} MB exceeded")
    elif sig == signal.SIGSYS:
        response = dict(base, crashed=True, error="killed by the system-call filter")
    elif sig is not None:
        response = dict(base, crashed=True, error=f"crashed ({signal.Signals(sig).name})")
    else:
        try:
            response, out = decode_frame(data, max_bytes)
            response = {**base, **response, "timeout": False, "crashed": False}
            if code != 0:
                response.update(ok=False, error=response.get("error") or f"exited with status {code}")
        except WireError as e:
            detail = "no result" if not data else f"malformed result ({e})"
            response = dict(base, error=f"job exited with status {code} and {detail}")
    response.update(exit=code, signal=sig, wall_s=wall, cpu_s=cpu)
    response.pop("blobs", None)
    return response, out


#: A warm-up job run in the server before the first fork, so that one-time initialisation
#: (OCC statics, first-use code paths) is paid once, not per job. It must not run boolean
#: operations, fillets or ``both=True`` extrusions (a fuse): those start OCC's thread pool, and a pool started in the server would
#: be inherited by every forked job without its threads (the job then waits forever).
#: (Jobs need no lazy Python imports — checked when this was written — which matters because
#: they run as ``nobody`` and may not be able to read the interpreter's files.)
_WARM_UP_SCRIPT = """import cadquery as cq
wp0 = cq.Workplane(cq.Plane(cq.Vector(0.0, 0.0, 0.0), cq.Vector(1.0, 0.0, 0.0), cq.Vector(0.0, 0.0, 1.0)))
loop0 = wp0.moveTo(0.0, 0.0).lineTo(1.0, 0.0).threePointArc((1.25, 0.5), (1.0, 1.0)).lineTo(0.0, 1.0).close()
loop1 = wp0.moveTo(0.5, 0.5).circle(0.2)
solid0 = wp0.add(loop0).add(loop1).extrude(0.5)
solid = solid0
"""


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _warm_up() -> None:
    before = _threads()
    header, blobs = _run_job({"items": [{"script": _WARM_UP_SCRIPT, "checked": True}], "mesh": True, "brep": True}, [])
    if not header["ok"]:
        raise RuntimeError(f"warm-up job failed: {header['error']}")
    brep = blobs[header["items"][0]["brep"]["blob"]]
    header, _ = _run_job({"items": [{"brep": 0}], "mesh": True}, [brep])
    if not header["ok"]:
        raise RuntimeError(f"warm-up job failed: {header['error']}")
    if _threads() != before:
        raise RuntimeError("the warm-up job started threads; forked jobs would inherit a broken pool")


def _probe() -> dict[str, Any]:
    """Which confinement layers work here: confine a throwaway child and ask it."""
    from img2prog.lang.cadquery._confine import confine

    workdir = tempfile.mkdtemp(prefix="img2prog-cq-probe-")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            flags = confine(workdir, w, cpu_s=5, memory_mb=256, require=())
            os.write(w, encode_frame({"flags": flags}))
        finally:
            os._exit(0)
    os.close(w)
    data, _, _, _ = _collect(r, pid, time.monotonic() + 30, 1 << 20)
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        return decode_frame(data, 0)[0].get("flags", {})
    except WireError:
        return {}


def serve() -> None:
    # fd 1 is the protocol channel: keep a private copy and point fd 1 at stderr, so that
    # anything printed by CadQuery/OCC (C++ std::cout included) cannot corrupt a frame.
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    proto_in = sys.stdin.buffer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the client owns the lifetime (closes stdin)
    try:
        import cadquery
    except Exception as e:
        write_frame(proto_out, {"ready": False, "error": f"cannot import cadquery: {type(e).__name__}: {e}"})
        return
    global _AVAILABLE
    try:
        _warm_up()
        flags = _probe()
    except Exception as e:
        write_frame(proto_out, {"ready": False, "error": f"sandbox server start-up failed: {type(e).__name__}: {e}"})
        return
    _AVAILABLE = tuple(sorted(k for k, v in flags.items() if v))
    write_frame(proto_out, {"ready": True, "pid": os.getpid(), "cadquery": cadquery.__version__,
                            "layers": flags})
    while True:
        try:
            header, blobs = read_frame(proto_in, MAX_REQUEST_BYTES)
        except EOFError:
            return
        try:
            response, out = run_request(header, blobs)
        except Exception as e:  # a bug in the server: report it, keep serving
            response, out = {"ok": False, "error": f"server error: {type(e).__name__}: {e}",
                             "trace": traceback.format_exc()[-4000:]}, []
        write_frame(proto_out, response, out)


if __name__ == "__main__":
    serve()
