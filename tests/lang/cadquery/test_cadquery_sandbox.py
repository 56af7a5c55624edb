"""The sandboxed executor: results, limits, and a suite of hostile scripts with zero escapes.

Hostile scripts run through an executor with ``checked=False``, i.e. *without* the static
validator, so only the OS layers (seccomp, Landlock, namespaces, rlimits, nobody) stand
between them and the machine. The same scripts are also shown to be rejected statically.
"""

from __future__ import annotations

import os
import socket
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from img2prog.lang.cadquery import parse
from img2prog.lang.cadquery.sandbox import Brep, Executor, Limits
from img2prog.lang.errors import ProgramError

BOX = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(0, 0).lineTo(2, 0).lineTo(2, 1).lineTo(0, 1).close().extrude(1)
"""
PART = "import cadquery as cq\nsolid = cq.Workplane('XY').circle(0.5).extrude(1)\n"


def test_runs_a_script_and_reports_the_solid(executor):
    r = executor.run(BOX, brep=True)
    assert r.ok and r.error is None and not (r.timeout or r.memory_exceeded or r.crashed or r.rejected)
    s = r.solid
    assert s.volume == pytest.approx(2.0) and s.area == pytest.approx(10.0)
    assert s.bbox == pytest.approx((0, 0, 0, 2, 1, 1)) and s.solids == 1 and s.faces == 6
    assert s.mesh.triangles.shape == (12, 3) and s.mesh.vertices.shape[1] == 3
    assert s.brep and b"CASCADE" in s.brep[:200]
    # every layer that works on this host was applied to the job
    assert r.sandbox.get("limits") and r.sandbox.get("syscalls") is not None
    for layer, ok in executor.info["layers"].items():
        if ok:
            assert r.sandbox.get(layer), layer
    # a BREP from one job is an input of another
    again = executor.run(Brep(s.brep))
    assert again.ok and again.solid.volume == pytest.approx(2.0)


def test_rejected_and_failing_scripts(executor):
    r = executor.run("import os\nos.system('true')\n")
    assert r.rejected and not r.ok and "import of 'os' is not allowed" in r.error
    # valid syntax, impossible geometry: a loop that crosses itself
    bowtie = ("import cadquery as cq\nsolid = cq.Workplane().moveTo(0, 0).lineTo(1, 1).lineTo(1, 0)"
              ".lineTo(0, 1).close().extrude(1)\n")
    r = executor.run(bowtie)
    assert not r.ok and not r.rejected and r.error.startswith("script:")
    # the same server keeps working afterwards
    assert executor.run(BOX).ok


def test_run_many_keeps_order(executor):
    scripts = [BOX.replace("extrude(1)", f"extrude({k})") for k in (1, 2, 3)]
    results = executor.run_many(scripts, mesh=False)
    assert [r.solid.volume for r in results] == pytest.approx([2.0, 4.0, 6.0])
    assert all(r.solid.mesh is None for r in results)


# --------------------------------------------------------------------------------------
# Limits.
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cpu_limit(unchecked):
    # a generous wall clock, so that the CPU limit is what stops it even on a loaded machine
    r = unchecked.run("while True:\n    pass\n", limits=Limits(cpu_s=1, wall_s=30))
    assert r.timeout and not r.ok and "CPU-time limit" in r.error, r.error


@pytest.mark.slow
def test_wall_clock_limit(unchecked):
    r = unchecked.run("import time\ntime.sleep(60)\n")
    assert r.timeout and "wall-clock limit" in r.error
    assert r.seconds < 8


def test_memory_limit(unchecked):
    r = unchecked.run("x = bytearray(8 * 1024 ** 3)\n")
    assert r.memory_exceeded and not r.ok
    r = unchecked.run("x = [bytearray(1024 ** 2) for _ in range(4096)]\n")
    assert r.memory_exceeded and not r.ok


def test_file_size_limit(unchecked):
    r = unchecked.run("f = open('big', 'wb')\nf.write(b'x' * (64 * 1024 * 1024))\nf.close()\n")
    assert not r.ok and ("file-size limit" in r.error or "File too large" in r.error)


def test_per_call_limits(executor):
    r = executor.run(BOX, limits=Limits(cpu_s=1, wall_s=0.001))
    assert r.timeout and "wall-clock" in r.error
    assert executor.run(BOX).ok


# --------------------------------------------------------------------------------------
# Hostile scripts: zero escapes.
# --------------------------------------------------------------------------------------


@pytest.fixture
def outside_dir():
    """A world-writable directory outside the sandbox (so only the sandbox can stop writes)."""
    d = Path(tempfile.mkdtemp(prefix="img2prog-escape-", dir="/tmp"))
    d.chmod(0o777)
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


def _run(ex: Executor, script: str):
    return ex.run(textwrap.dedent(script), mesh=False)


def _marker(d: Path) -> Path:
    return d / f"escaped-{uuid.uuid4().hex}"


def test_file_writes_outside_the_sandbox_fail(unchecked, outside_dir):
    target = _marker(outside_dir)
    attempts = [
        f"open({str(target)!r}, 'w').write('x')",
        f"import os\nfd = os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY, 0o666)\nos.write(fd, b'x')",
        f"import os\nos.mkdir({str(target)!r})",
        f"import os\nos.symlink('/etc/passwd', {str(target)!r})",
        f"import os\nos.link('/etc/hostname', {str(target)!r})",
        f"import os\nopen('mine', 'w').write('x')\nos.rename('mine', {str(target)!r})",
        f"open({str(Path.cwd() / 'escaped')!r}, 'w').write('x')",
    ]
    for script in attempts:
        r = _run(unchecked, script)
        assert not r.ok, script
        # EACCES / EXDEV from Landlock (EPERM: the kernel's protected_hardlinks got there first)
        assert any(f"[Errno {n}]" in r.error for n in (1, 13, 18)), r.error
        assert not target.exists() and not (Path.cwd() / "escaped").exists()
    # positive control: the job's own working directory is writable
    r = _run(unchecked, "open('scratch', 'w').write('ok')\nimport cadquery as cq\nsolid = cq.Workplane().circle(1).extrude(1)\n")
    assert r.ok, r.error


def test_no_network(unchecked):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    scripts = [
        f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "import socket\ns = socket.socket(socket.AF_UNIX)",
        "import socket\ns = socket.socketpair()",
        "import ctypes\nassert ctypes.CDLL(None).socket(2, 1, 0) >= 0, 'socket() failed'",
    ]
    for script in scripts:
        r = _run(unchecked, script)
        assert not r.ok, script
    t.join()
    server.close()
    assert accepted == []


def test_no_new_processes(unchecked, outside_dir):
    target = _marker(outside_dir)
    scripts = [
        "import os\nwhile True:\n    os.fork()",  # fork bomb
        f"import os\nassert os.system('touch {target}') == 0, 'system failed'",
        f"import os\nos.execv('/usr/bin/touch', ['touch', '{target}'])",
        f"import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{target}'], {{}})",
        "import ctypes\nassert ctypes.CDLL(None).fork() >= 0, 'fork failed'",
        "import ctypes\nassert ctypes.CDLL(None).vfork() >= 0, 'vfork failed'",
        "import ctypes\nassert ctypes.CDLL(None).syscall(56, 17, 0, 0, 0, 0) >= 0, 'clone failed'",
    ]
    for script in scripts:
        r = _run(unchecked, script)
        assert not r.ok, (script, r.error)
        assert not r.timeout, script  # refused at once, not merely cut off
    assert not target.exists()


def test_threads_still_work(unchecked):
    r = _run(unchecked, """
        import threading, cadquery as cq
        out = []
        t = threading.Thread(target=lambda: out.append(1))
        t.start(); t.join()
        assert out == [1]
        solid = cq.Workplane().circle(1).extrude(1)
    """)
    assert r.ok, r.error


def test_cannot_signal_or_inspect_other_processes(unchecked):
    me = os.getpid()
    scripts = [
        f"import os, signal\nos.kill({me}, signal.SIGTERM)",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "import os, signal\nos.killpg(0, signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)",
        f"import ctypes\nassert ctypes.CDLL(None).kill({me}, 9) == 0, 'kill failed'",
        f"open('/proc/{me}/mem', 'rb').read(1)",
        f"import ctypes\nassert ctypes.CDLL(None).ptrace(16, {me}, 0, 0) == 0, 'ptrace failed'",
    ]
    for script in scripts:
        r = _run(unchecked, script)
        assert not r.ok, script
    # we and the server are alive
    assert unchecked.run(PART).ok


def test_cannot_raise_its_own_limits_or_regain_privileges(unchecked):
    scripts = [
        "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))",
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))",
        "import os\nos.setuid(0)",
        "import ctypes\nassert ctypes.CDLL(None).unshare(0x10000000) == 0, 'unshare failed'",
        "import ctypes\nassert ctypes.CDLL(None).mount(b'none', b'.', b'tmpfs', 0, None) == 0, 'mount failed'",
    ]
    for script in scripts:
        r = _run(unchecked, script)
        assert not r.ok, script
    r = _run(unchecked, "import os\nassert os.geteuid() != 0, 'still root'\nimport cadquery as cq\n"
                        "solid = cq.Workplane().circle(1).extrude(1)\n")
    assert r.ok, r.error


def test_import_and_eval_tricks(unchecked, executor, outside_dir):
    target = _marker(outside_dir)
    tricks = [
        f"__import__('os').system('touch {target}')",
        f"eval(\"__import__('os').system('touch {target}')\")",
        f"exec(\"import os; os.system('touch {target}')\")",
        f"getattr(__builtins__, '__import__')('os').system('touch {target}')",
        f"().__class__.__base__.__subclasses__()\nopen({str(target)!r}, 'w')",
        f"import builtins\nbuiltins.open({str(target)!r}, 'w').write('x')",
        f"import importlib\nimportlib.import_module('subprocess').run(['touch', '{target}'])",
    ]
    for script in tricks:
        with pytest.raises(ProgramError):
            parse(script)  # the validator never lets them through
        r = executor.run(script)
        assert r.rejected and not r.ok
        r = _run(unchecked, script)  # and without it the OS layers stop them
        assert not r.ok, script
    assert not target.exists()


def test_protocol_channel_cannot_be_corrupted(unchecked):
    r = _run(unchecked, """
        import os
        for fd in range(1, 64):
            try:
                os.write(fd, b'\\x00\\x00\\x00\\x05garbage')
            except OSError:
                pass
        import cadquery as cq
        solid = cq.Workplane().circle(1).extrude(1)
    """)
    # writing into its own result pipe is the one thing a job can do: it garbles *its*
    # result, which is then reported as malformed; nothing else is affected
    assert not r.ok and ("malformed" in r.error or "no result" in r.error)
    assert unchecked.run(PART).ok


def test_a_crashing_job_is_reported_and_the_server_survives(unchecked):
    r = _run(unchecked, "import ctypes\nctypes.string_at(0)")
    assert r.crashed and "SIGSEGV" in r.error
    r = _run(unchecked, "import os\nos._exit(3)")
    assert not r.ok and "status 3" in r.error
    assert unchecked.run(PART).ok


def test_no_processes_left_behind(unchecked):
    server_pid = unchecked._servers[0].proc.pid
    _run(unchecked, "import threading, time\nfor _ in range(20):\n    threading.Thread(target=time.sleep, args=(60,)).start()")
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    assert children == []
