"""The sandbox's first process: isolate, limit, drop privileges, then exec the runner.

Run by :mod:`vibesdk_server._eval.sandbox` as ``python -I -S _sandbox_launcher.py CONFIG``
(standard library only, nothing from the environment), in a new session, with an empty
environment, standard output and error going to files the parent reads afterwards and a pipe
(``result_fd``) for the outcome. In order:

1. new namespaces: as root, a network namespace (only a loopback interface, which stays down:
   every connection fails) and a mount namespace; as another user, a user namespace with a
   network namespace where the kernel allows unprivileged ones. What worked is written to the
   result pipe as the first line (``{"setup": {...}}``).
2. as root with a mount namespace: the root file system read-only, and fresh size-limited tmpfs
   on ``/tmp``, ``/var/tmp`` and ``/dev/shm``; the answer runs in ``/tmp/work``.
3. resource limits (set before step 1, see ``_launch``): CPU seconds, address space,
   processes, file size, open files, no core files; SIGXFSZ ignored so that a write past the
   file-size limit raises ``OSError(EFBIG)``.
4. as root: every group dropped and the sandbox's own uid/gid taken (where RLIMIT_NPROC counts).
5. ``execve`` of the sandbox's interpreter on the runner's source, with an empty environment.

A setup step that the parent requires and that fails ends the launcher with status 125 and a
``{"setup_error": ...}`` line. ``--reap UID GID`` instead kills every process of that uid (the
slot's uid is used by nothing else): it becomes that user and sends SIGKILL to -1 until none is
left, which also catches processes that left the session.
"""

import ctypes
import ctypes.util
import errno
import json
import os
import resource
import signal
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
SETUP_FAILED = 125

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _tasks_of(uid: int) -> int:
    """How many tasks (threads count for RLIMIT_NPROC) the uid runs now."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                pass
    return count


def _isolate(config: dict, setup: dict) -> None:  # type: ignore[type-arg]
    root = config["uid"] is not None
    setup["network"] = False
    setup["mounts"] = False
    if root:
        wanted = CLONE_NEWNET | (CLONE_NEWNS if config["mounts"] else 0)
        for flags in (wanted, CLONE_NEWNET):
            try:
                _unshare(flags)
            except OSError as exc:
                setup["unshare_error"] = str(exc)
                continue
            setup["network"] = bool(flags & CLONE_NEWNET)
            setup["mounts"] = bool(flags & CLONE_NEWNS)
            break
    else:
        uid, gid = os.getuid(), os.getgid()
        try:
            _unshare(CLONE_NEWUSER | CLONE_NEWNET)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
            setup["network"] = True
        except OSError as exc:
            setup["unshare_error"] = str(exc)
    if setup["mounts"]:
        _private_file_system(config, setup)


def _private_file_system(config: dict, setup: dict) -> None:  # type: ignore[type-arg]
    uid, gid, size = config["uid"], config["gid"], config["disk_bytes"]
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    try:
        _mount("none", "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        setup["read_only_root"] = True
    except OSError as exc:
        setup["read_only_root"] = False
        setup["read_only_error"] = str(exc)
    for target in ("/tmp", "/var/tmp", "/dev/shm"):  # noqa: S108 -- fresh tmpfs, not shared dirs
        if os.path.isdir(target):
            options = f"size={size},mode=1777,nr_inodes=4096"
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)
    work = "/tmp/work"  # noqa: S108 -- inside the tmpfs just mounted
    os.mkdir(work, 0o700)
    os.chown(work, uid, gid)
    os.chdir(work)
    setup["cwd"] = work


def _limit(config: dict) -> None:  # type: ignore[type-arg]
    limits = config["limits"]
    processes = limits["processes"]
    if config["uid"] is None:  # our own uid: its other processes count against the limit too
        processes += _tasks_of(os.getuid())
    for which, value, hard in (
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_CPU, limits["cpu_s"], limits["cpu_s"] + 1),
        (resource.RLIMIT_AS, limits["memory_bytes"], limits["memory_bytes"]),
        (resource.RLIMIT_NPROC, processes, processes),
        (resource.RLIMIT_FSIZE, limits["file_bytes"], limits["file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"], limits["open_files"]),
    ):
        resource.setrlimit(which, (value, hard))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, so it is reported


def _drop(config: dict) -> None:  # type: ignore[type-arg]
    if config["uid"] is not None:
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])


def _launch(config: dict) -> None:  # type: ignore[type-arg]
    fd = config["result_fd"]
    with open(config["runner"], encoding="utf-8") as f:
        source = f.read()
    setup: dict[str, object] = {}
    try:
        # Limits first: a user namespace records RLIMIT_NPROC when it is created, and a limit
        # set inside it afterwards does not bound the processes counted there.
        _limit(config)
        _isolate(config, setup)
        if config["require_network"] and not setup["network"]:
            raise OSError(errno.EPERM, "no network namespace: " + str(setup.get("unshare_error")))
        _drop(config)
    except OSError as exc:
        os.write(fd, (json.dumps({"setup_error": str(exc), "setup": setup}) + "\n").encode())
        os._exit(SETUP_FAILED)
    os.write(fd, (json.dumps({"setup": setup}) + "\n").encode())
    os.set_inheritable(fd, True)
    python = config["python"]
    os.execve(python, [python, "-I", "-S", "-c", source, str(fd)], {})  # noqa: S606 -- no shell


def _alive(uid: int) -> int:
    """How many live (not zombie) processes the uid runs now."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != str(os.getpid()):
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            count += state not in ("Z", "X")
    return count


def _reap(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    # kill(-1) reports success whenever any other process exists, even one it may not signal,
    # so /proc says when the uid's processes are gone.
    for _ in range(200):
        if not _alive(uid):
            return
        os.kill(-1, signal.SIGKILL)
        time.sleep(0.01)
    sys.exit(f"processes of uid {uid} keep coming back")


if __name__ == "__main__":
    if sys.argv[1] == "--reap":
        _reap(int(sys.argv[2]), int(sys.argv[3]))
    else:
        _launch(json.loads(sys.argv[1]))
