"""Sandboxed execution of CadQuery scripts: a preloaded server that forks one confined job each.

>>> with Executor(workers=2) as ex:                      # doctest: +SKIP
...     r = ex.run("import cadquery as cq\\nsolid = cq.Workplane().moveTo(0, 0).circle(1).extrude(2)")
...     r.ok, round(r.solid.volume, 3), r.solid.mesh.triangles.shape
(True, 6.283, (..., 3))

Design (why it is fast and what it protects):

- **Validate, then run our own text.** By default (``checked=True``) a script is parsed by the
  static validator (:func:`~.parser.parse`) in the calling process and what runs is the
  *canonical script printed from the program*, with no builtins but an import of ``cadquery``
  / ``math``. Untrusted text never reaches ``exec``. ``checked=False`` runs arbitrary text
  (any CadQuery, e.g. datasets beyond the subset); then only the OS layers below protect.
- **Import once, fork per job.** A server process (``python -m img2prog.lang.cadquery._server``)
  imports CadQuery (~3–7 s) once; each job is a ``fork`` of it (~ms), confined by
  :func:`~._confine.confine` before the script runs: CPU-time and address-space limits, file-size
  and open-file limits, ``nobody`` without capabilities when started as root, an empty network
  namespace, Landlock (writes only in a throwaway working directory, no signals out), and a
  seccomp filter (no fork/exec/sockets/kill/ptrace/mount/...). The server enforces the
  wall-clock limit and kills the job's process group.
- **Results are data, never code.** The job sends JSON + raw arrays (:mod:`._wire`), checked
  for size and shape; nothing is unpickled.

What it does **not** protect against (see ``docs/cadquery.md``): reading world-readable files
(Landlock restricts writes, not reads, so a script can read such a file and put it in its
error message); a script using its CPU/wall/memory budget in full (budgets bound, not prevent,
denial of service; concurrent jobs share the machine); the kernel itself (a kernel exploit
reachable through the allowed system calls escapes any seccomp/namespace sandbox); forged
results from ``checked=False`` scripts (such a script may write any well-formed frame to its
result pipe: trust the geometry of unchecked scripts no more than the scripts); non-x86-64 or
non-Linux hosts (no seccomp; the result's ``sandbox`` flags say which layers applied), and
disk use inside the working directory beyond the per-file size limit.
"""

from __future__ import annotations

import atexit
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from img2prog.lang.cadquery._wire import WireError, read_frame, spec_array, write_frame
from img2prog.lang.cadquery.ast import Program, to_script
from img2prog.lang.cadquery.geometry import Mesh
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.errors import ProgramError

MAX_RESPONSE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-job budgets. ``memory_mb`` is address-space growth beyond the preloaded server."""

    cpu_s: float = 10.0
    wall_s: float = 20.0
    memory_mb: int = 2048
    file_mb: int = 16
    max_output_mb: int = 256
    #: sandbox layers whose absence makes a job fail instead of running less confined
    require: tuple[str, ...] = ("limits", "syscalls")

    def to_dict(self) -> dict[str, Any]:
        return {"cpu_s": self.cpu_s, "wall_s": self.wall_s, "memory_mb": self.memory_mb,
                "file_mb": self.file_mb, "max_output_mb": self.max_output_mb, "require": list(self.require)}


@dataclass
class SolidInfo:
    """What a job reports about one solid (in the script's own coordinates)."""

    volume: float
    area: float
    bbox: tuple[float, float, float, float, float, float]  # xmin, ymin, zmin, xmax, ymax, zmax
    solids: int  # number of disjoint solids
    faces: int
    mesh: Mesh | None = None
    brep: bytes | None = None


@dataclass
class ExecResult:
    """Outcome of one job. ``ok`` means every item built a valid solid of positive volume.

    ``rejected``: the static validator refused the script (it never ran); ``timeout``: CPU or
    wall-clock limit; ``memory_exceeded``: the memory limit; ``crashed``: the job died by a
    signal (e.g. a segfault in the geometry kernel). ``error`` says what happened in one line.
    ``solids`` has one entry per item when ``ok``; ``iou`` is set for IoU jobs.
    """

    ok: bool
    error: str | None = None
    timeout: bool = False
    memory_exceeded: bool = False
    crashed: bool = False
    rejected: bool = False
    solids: list[SolidInfo] = field(default_factory=list)
    iou: float | None = None
    seconds: float = 0.0  # wall time seen by the caller
    cpu_s: float = 0.0  # CPU time of the job process (user + system)
    sandbox: dict[str, Any] = field(default_factory=dict)

    @property
    def solid(self) -> SolidInfo | None:
        return self.solids[0] if self.solids else None


class SandboxUnavailable(RuntimeError):
    """The server could not start (e.g. CadQuery is not installed)."""


@dataclass(frozen=True)
class Brep:
    """A solid given as BREP bytes (e.g. ``result.solid.brep`` of an earlier job)."""

    data: bytes


Item = str | Program | Brep


# --------------------------------------------------------------------------------------
# One server process.
# --------------------------------------------------------------------------------------


class _Server:
    def __init__(self, start_timeout: float):
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "img2prog.lang.cadquery._server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal goes to the client, not the server
        )
        header = self._read(self.start_timeout)[0]
        if not header.get("ready"):
            self.stop()
            raise SandboxUnavailable(header.get("error") or "the CadQuery sandbox server did not start")
        self.info = header

    def _read(self, timeout: float) -> tuple[dict[str, Any], list[bytes]]:
        assert self.proc is not None
        box: list = []

        def reader() -> None:
            try:
                box.append(read_frame(self.proc.stdout, MAX_RESPONSE_BYTES))
            except BaseException as e:  # EOF, malformed frame
                box.append(e)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if not box:
            self.stop()
            raise SandboxUnavailable(f"the sandbox server did not answer within {timeout:.0f} s")
        if isinstance(box[0], BaseException):
            self.stop()
            e = box[0]
            what = "exited" if isinstance(e, EOFError) else f"sent a malformed frame ({e})"
            raise SandboxUnavailable(f"the sandbox server {what}")
        return box[0]

    def request(self, header: dict[str, Any], blobs: list[bytes], timeout: float):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            write_frame(self.proc.stdin, header, blobs)
        except (BrokenPipeError, OSError):
            self.stop()
            raise SandboxUnavailable("the sandbox server exited") from None
        return self._read(timeout)

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()


# --------------------------------------------------------------------------------------
# The executor.
# --------------------------------------------------------------------------------------


class Executor:
    """Runs CadQuery scripts in sandboxed job processes; ``workers`` jobs at a time.

    Thread-safe. Servers start lazily on first use (``start()`` starts them now) and are
    restarted transparently if one dies. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        workers: int = 1,
        limits: Limits | None = None,
        checked: bool = True,
        tolerance: float = 2e-3,
        angular_tolerance: float = 0.3,
        start_timeout: float = 180.0,
    ):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.limits = limits or Limits()
        self.checked = checked
        self.tolerance = tolerance  # tessellation: linear, relative to the bounding-box diagonal
        self.angular_tolerance = angular_tolerance  # and angular, in radians
        self._servers = [_Server(start_timeout) for _ in range(workers)]
        self._free: queue.Queue[_Server] = queue.Queue()
        for s in self._servers:
            self._free.put(s)
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    # --- lifetime -----------------------------------------------------------------------
    def start(self) -> Executor:
        """Start every server now (in parallel); raises SandboxUnavailable if one cannot."""
        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(lambda s: s.proc is None and s.start(), self._servers))
        return self

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for s in self._servers:
            s.stop()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def info(self) -> dict[str, Any]:
        """What the first started server reported (CadQuery version, Landlock ABI, seccomp)."""
        return next((s.info for s in self._servers if s.info), {})

    # --- jobs ---------------------------------------------------------------------------
    def _item(self, x: Item, name: str, blobs: list[bytes]) -> dict[str, Any]:
        if isinstance(x, Brep):
            blobs.append(x.data)
            return {"brep": len(blobs) - 1, "name": name}
        if isinstance(x, Program):
            return {"script": to_script(x), "checked": True, "name": name}
        if not isinstance(x, str):
            raise TypeError(f"expected script text, a Program or a Brep, got {type(x).__name__}")
        if self.checked:
            return {"script": to_script(parse(x)), "checked": True, "name": name}
        return {"script": x, "checked": False, "name": name}

    def _job(self, items: Sequence[tuple[Item, str]], mesh: bool, brep: bool, iou: bool = False,
             normalize: bool = True, limits: Limits | None = None) -> ExecResult:
        if self._closed:
            raise RuntimeError("the executor is closed")
        start = time.perf_counter()
        blobs: list[bytes] = []
        try:
            specs = [self._item(x, name, blobs) for x, name in items]
        except ProgramError as e:
            return ExecResult(ok=False, error=f"not a program: {e}", rejected=True,
                              seconds=time.perf_counter() - start)
        limits = limits or self.limits
        header = {"job": {"items": specs, "mesh": mesh, "brep": brep, "iou": iou, "normalize": normalize,
                          "tolerance": self.tolerance, "angular_tolerance": self.angular_tolerance},
                  "limits": limits.to_dict()}
        server = self._free.get()
        try:
            response, out = server.request(header, blobs, timeout=limits.wall_s + 30)
        except SandboxUnavailable as e:
            return ExecResult(ok=False, error=str(e), crashed=True, seconds=time.perf_counter() - start)
        finally:
            self._free.put(server)
        result = _result(response, out)
        result.seconds = time.perf_counter() - start
        return result

    def run(self, script: Item, mesh: bool = True, brep: bool = False, limits: Limits | None = None) -> ExecResult:
        """Build one script's solid; with ``mesh`` its tessellation, with ``brep`` its BREP."""
        return self._job([(script, "script")], mesh, brep, limits=limits)

    def run_many(self, scripts: Iterable[Item], mesh: bool = True, brep: bool = False) -> list[ExecResult]:
        """:meth:`run` over many scripts, ``workers`` at a time, results in input order."""
        return self.map(lambda s: self.run(s, mesh=mesh, brep=brep), scripts)

    def compare(self, prediction: Item, target: Item, mesh: bool = False, normalize: bool = True) -> ExecResult:
        """Build both solids in one job and compute their volumetric IoU (OCC booleans).

        ``result.iou`` is set when both built; ``result.solids`` is [prediction, target].
        The error of a failed job names which side failed.
        """
        return self._job([(prediction, "prediction"), (target, "target")], mesh, False, iou=True,
                         normalize=normalize)

    def map(self, fn, xs: Iterable) -> list:
        xs = list(xs)
        if self.workers == 1 or len(xs) <= 1:
            return [fn(x) for x in xs]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cq-sandbox")
        return list(self._pool.map(fn, xs))


def _result(response: dict[str, Any], blobs: list[bytes]) -> ExecResult:
    """Turn a response frame into an ExecResult, checking every field it uses."""
    def flag(name: str) -> bool:
        return response.get(name) is True

    error = response.get("error")
    cpu = response.get("cpu_s")
    result = ExecResult(
        ok=flag("ok"), error=str(error)[:4000] if error is not None else None, timeout=flag("timeout"),
        memory_exceeded=flag("memory_exceeded"), crashed=flag("crashed"),
        cpu_s=float(cpu) if isinstance(cpu, (int, float)) else 0.0,
        sandbox=response.get("sandbox") if isinstance(response.get("sandbox"), dict) else {},
    )
    if not result.ok:
        result.error = result.error or "the job failed without a message"
        return result
    try:
        items = response.get("items")
        if not isinstance(items, list) or not items:
            raise WireError("no items in a successful result")
        for it in items:
            result.solids.append(_solid_info(it, blobs))
        iou = response.get("iou")
        if iou is not None:
            if not isinstance(iou, (int, float)) or not 0 <= iou <= 1:
                raise WireError(f"iou {iou!r} is not in [0, 1]")
            result.iou = float(iou)
    except (WireError, ValueError, TypeError, KeyError) as e:
        return ExecResult(ok=False, error=f"malformed job result: {e}", crashed=True, cpu_s=result.cpu_s,
                          sandbox=result.sandbox)
    return result


def _solid_info(it: Any, blobs: list[bytes]) -> SolidInfo:
    if not isinstance(it, dict):
        raise WireError("item is not an object")
    bbox = it["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 6 and all(isinstance(x, (int, float)) for x in bbox)):
        raise WireError(f"bad bbox {bbox!r}")
    mesh = None
    if "mesh" in it:
        v = spec_array(it["mesh"]["vertices"], blobs)
        t = spec_array(it["mesh"]["triangles"], blobs)
        if v.dtype != np.float32 or t.dtype != np.uint32:
            raise WireError("mesh arrays have unexpected dtypes")
        mesh = Mesh(v, t.astype(np.int64))
    brep = spec_array(it["brep"], blobs).tobytes() if "brep" in it else None
    return SolidInfo(
        volume=float(it["volume"]), area=float(it["area"]), bbox=tuple(float(x) for x in bbox),
        solids=int(it["solids"]), faces=int(it["faces"]), mesh=mesh, brep=brep,
    )


# --------------------------------------------------------------------------------------
# A shared default executor (what Language.render and the metrics use).
# --------------------------------------------------------------------------------------

_DEFAULT: Executor | None = None
_DEFAULT_LOCK = threading.Lock()


def default_workers() -> int:
    """Two servers per CPU (at most 8): while one waits for its next request, the other
    computes. On this project's shared 2-core machine 4 servers gave a median 11.8 scripts/s
    against 9.9 for 2 (``benchmarks/cadquery_bench.py``, interleaved rounds)."""
    return max(1, min(8, 2 * (os.cpu_count() or 1)))


def default_executor() -> Executor:
    """A process-wide executor with :func:`default_workers` servers, closed at exit."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT._closed:
            _DEFAULT = Executor(workers=default_workers())
            atexit.register(_DEFAULT.close)
        return _DEFAULT


def cadquery_available() -> bool:
    """Whether CadQuery can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("cadquery") is not None
