"""Operating-system confinement of one forked job process (Linux; no third-party code).

:func:`confine` is called in the child right after ``fork`` and before any untrusted code
runs. Layers, each independent of the others (a layer that is unavailable is reported in
the returned flags, never silently assumed):

1. **Process hygiene**: a new session (the server kills the whole group), stdin/stdout/stderr
   on ``/dev/null`` (stdout is the server's protocol channel), every other inherited file
   descriptor closed except the result pipe, a private throwaway working directory.
2. **Resource limits** (``setrlimit``, set while still privileged so they cannot be raised
   later): CPU seconds (SIGXCPU, then SIGKILL one second later), address-space growth
   (``RLIMIT_AS`` = current size + the memory budget, since the child inherits the server's
   preloaded CadQuery), size of any written file, open files, no core dumps.
3. **Privileges**: when running as root, drop to ``nobody`` (uid/gid 65534, no supplementary
   groups), which also drops every capability; then ``PR_SET_NO_NEW_PRIVS``.
4. **Network**: a new, empty network namespace (``unshare(CLONE_NEWUSER | CLONE_NEWNET)``):
   no interfaces but a down loopback.
5. **File system** (Landlock, kernel ≥ 5.13): writing, creating, removing, renaming,
   truncating and executing files are denied everywhere except beneath the working directory;
   from Landlock ABI 4 TCP bind/connect are denied, from ABI 6 signals to processes outside the
   sandbox and abstract unix sockets are denied. Reading is *not* restricted.
6. **System calls** (seccomp-BPF, x86-64): new processes (fork, vfork, non-thread clone,
   clone3 → ENOSYS so threads fall back to clone), exec, sockets, kill, ptrace and access to
   other processes' memory, mount/namespace/module/kexec/bpf/perf/io_uring/keyring calls,
   uid/gid changes and raising resource limits fail with EPERM.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct

NOBODY = 65534

# --- constants from the Linux UAPI headers ---------------------------------------------------
_CLONE_THREAD = 0x00010000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_RET_KILL_PROCESS = 0x80000000
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

# x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
_SYS = {
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53,
    "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "kill": 62, "ptrace": 101, "syslog": 103,
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setgroups": 116,
    "setresuid": 117, "setresgid": 119, "rt_sigqueueinfo": 129, "mknod": 133, "personality": 135,
    "pivot_root": 155, "setrlimit": 160, "chroot": 161, "acct": 163, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "init_module": 175, "delete_module": 176,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "mknodat": 259,
    "unshare": 272, "accept4": 288, "rt_tgsigqueueinfo": 297, "perf_event_open": 298,
    "prlimit64": 302, "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "execveat": 322, "userfaultfd": 323, "pidfd_send_signal": 424,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435,
}
_DENY = sorted(n for n in _SYS if n not in ("clone", "clone3", "prlimit64"))

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on all arches.
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_READ_FILE, _FS_READ_DIR = 1 << 2, 1 << 3
_FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class ConfinementError(RuntimeError):
    """A layer that must be applied could not be (the job does not run)."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel (0 when unavailable)."""
    ret = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    return max(int(ret), 0)


def seccomp_supported() -> bool:
    return platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")


# --- layers ----------------------------------------------------------------------------------


def _hygiene(keep_fd: int, workdir: str) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    # Close everything inherited (the server's protocol pipes, other jobs' pipes, ...).
    max_fd = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    max_fd = 65536 if max_fd in (resource.RLIM_INFINITY, -1) or max_fd > 65536 else max_fd
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, max_fd)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/nonexistent", "LANG": "C.UTF-8"})


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _limits(cpu_s: float, memory_mb: int, file_mb: int, max_files: int) -> None:
    cpu = max(1, int(-(-cpu_s // 1)))  # whole seconds, rounded up
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    limit = _vm_bytes() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _drop_privileges(workdir: str) -> bool:
    if os.geteuid() != 0:
        return False
    os.chown(workdir, NOBODY, NOBODY)
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    return True


def _isolate_network() -> bool:
    return _libc.unshare(ctypes.c_int(_CLONE_NEWUSER | _CLONE_NEWNET)) == 0


def _landlock(workdir: str) -> int:
    abi = landlock_abi()
    if abi < 1:
        return 0
    fs_all = _FS_ALL_BY_ABI[max(k for k in _FS_ALL_BY_ABI if k <= abi)]
    handled_fs = fs_all & ~(_FS_READ_FILE | _FS_READ_DIR)  # reading stays allowed
    fields = [handled_fs]
    if abi >= 4:
        fields.append(_NET_BIND_TCP | _NET_CONNECT_TCP)
    if abi >= 6:
        fields.append(_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL)
    attr = struct.pack(f"<{len(fields)}Q", *fields)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _check(_libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)),
                                   ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        dir_fd = os.open(workdir, os.O_PATH | os.O_DIRECTORY)
        try:
            # Inside the working directory: every handled right (a rule may only grant those).
            rule = struct.pack("<Qi", handled_fs, dir_fd)  # landlock_path_beneath_attr is packed
            rbuf = ctypes.create_string_buffer(rule, len(rule))
            _check(_libc.syscall(_SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset),
                                 ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH), rbuf, ctypes.c_uint32(0)),
                   "landlock_add_rule")
        finally:
            os.close(dir_fd)
        _check(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


# --- seccomp-BPF -----------------------------------------------------------------------------


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_lo(i: int) -> int:  # offset of the low 32 bits of seccomp_data.args[i] (little endian)
    return 16 + 8 * i


def seccomp_program() -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions (exposed for tests)."""
    eperm = _SECCOMP_RET_ERRNO | errno.EPERM
    prog = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        (_RET_K, 0, 0, _SECCOMP_RET_KILL_PROCESS),  # a foreign syscall ABI: kill
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JGE_K, 0, 1, _X32_SYSCALL_BIT),
        (_RET_K, 0, 0, eperm),  # x32 numbers alias the denied calls
    ]
    for name in _DENY:
        prog += [(_JEQ_K, 0, 1, _SYS[name]), (_RET_K, 0, 0, eperm)]
    # clone3 takes its flags in a struct the filter cannot read: ENOSYS makes glibc fall
    # back to clone, whose flags it can.
    prog += [(_JEQ_K, 0, 1, _SYS["clone3"]), (_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS)]
    # clone: threads (CLONE_THREAD) only.
    prog += [
        (_JEQ_K, 0, 4, _SYS["clone"]),
        (_LD_W_ABS, 0, 0, _arg_lo(0)),
        (_JSET_K, 1, 0, _CLONE_THREAD),
        (_RET_K, 0, 0, eperm),
        (_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
    ]
    # prlimit64: reading limits (new_limit == NULL) only.
    prog += [
        (_JEQ_K, 0, 6, _SYS["prlimit64"]),
        (_LD_W_ABS, 0, 0, _arg_lo(2)),
        (_JEQ_K, 0, 3, 0),
        (_LD_W_ABS, 0, 0, _arg_lo(2) + 4),
        (_JEQ_K, 0, 1, 0),
        (_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        (_RET_K, 0, 0, eperm),
    ]
    prog.append((_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    return prog


def _seccomp() -> bool:
    if not seccomp_supported():
        return False
    prog = seccomp_program()
    arr = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
    fprog = _SockFprog(len(prog), arr)
    _check(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")
    return True


# --- all together ------------------------------------------------------------------------------


def confine(
    workdir: str,
    keep_fd: int,
    cpu_s: float,
    memory_mb: int,
    file_mb: int = 16,
    max_files: int = 64,
    require: tuple[str, ...] = ("limits", "syscalls"),
) -> dict[str, bool | int]:
    """Confine the calling (freshly forked, single-threaded) process; returns what applied.

    ``require`` names layers whose absence is fatal (:class:`ConfinementError`): of
    ``limits``, ``unprivileged``, ``network``, ``filesystem``, ``syscalls``.
    """
    _hygiene(keep_fd, workdir)
    _limits(cpu_s, memory_mb, file_mb, max_files)
    flags: dict[str, bool | int] = {"limits": True}
    flags["unprivileged"] = _drop_privileges(workdir) or os.geteuid() != 0
    flags["network"] = _isolate_network()
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    try:
        flags["filesystem"] = _landlock(workdir)
    except OSError:
        flags["filesystem"] = 0
    flags["syscalls"] = _seccomp()
    missing = [name for name in require if not flags.get(name)]
    if missing:
        raise ConfinementError(f"sandbox layer(s) unavailable: {', '.join(missing)}")
    return flags
