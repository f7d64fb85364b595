"""Run untrusted Python (a model's answer and an item's tests) in a limited subprocess.

Each run is a fresh process tree: ``python -I -S`` on :mod:`._sandbox_launcher`, which takes new
namespaces, sets the resource limits, drops privileges and execs the sandbox's interpreter on
:mod:`._sandbox_runner` (the module docstrings say how). This module chooses who and what runs,
enforces the wall clock, kills what is left and turns the outcome into a :class:`RunResult`.

Who runs it. As root (CI containers, these machines), RLIMIT_NPROC does nothing, so each
concurrent run takes its own uid and gid, the first from ``uid_base`` up (by default
2,100,000,000: numbers no account uses) that no other run on the machine holds -- sandboxes of
other processes included, through a lock file per uid. The process limit then counts that run's
processes only, and after the run every process of that uid is killed, including ones that
left the session. Not as root, the run keeps the caller's uid: its process limit is the
caller's current task count plus ``Limits.processes``, and only the run's session is killed.

What is probed once (on the first run, see :attr:`Sandbox.isolation`): which interpreter the
sandbox user can execute (``sys.executable`` may live in a home directory it cannot read; then
the system's ``python3``), and whether a new network namespace is possible. Once it was, every
later run requires it: a run that cannot get one fails with ``sandbox_error`` rather than run
with the network.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_UID_BASE", "Isolation", "Limits", "RunResult", "Sandbox", "SandboxError"]

DEFAULT_UID_BASE = 2_100_000_000
_HERE = Path(__file__).resolve().parent
_LAUNCHER = _HERE / "_sandbox_launcher.py"
_RUNNER = _HERE / "_sandbox_runner.py"
_SETUP_FAILED = 125
_TAIL = 2000  # characters of stdout/stderr kept in a result
_MiB = 1 << 20


class SandboxError(RuntimeError):
    """The sandbox cannot run anything here (no usable interpreter, a bad limit)."""


@dataclass(frozen=True)
class Limits:
    """What one run may use. Every limit applies to each run separately.

    ``timeout_s``: wall clock from start to the last process killed. ``cpu_s``: CPU seconds of
    each process (RLIMIT_CPU; default ``ceil(timeout_s)``). ``memory_bytes``: address space of
    each process (RLIMIT_AS). ``processes``: processes and threads of the run (RLIMIT_NPROC).
    ``file_bytes``: largest file it may write, standard output and error included
    (RLIMIT_FSIZE). ``disk_bytes``: size of each fresh tmpfs (``/tmp``, ``/var/tmp``,
    ``/dev/shm``; root only). ``open_files``: RLIMIT_NOFILE.
    """

    timeout_s: float = 10.0
    cpu_s: int | None = None
    memory_bytes: int = 512 * _MiB
    processes: int = 32
    file_bytes: int = 16 * _MiB
    disk_bytes: int = 64 * _MiB
    open_files: int = 256

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_bytes", "processes", "file_bytes", "disk_bytes"):
            if not getattr(self, name) > 0:
                raise SandboxError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")
        if self.cpu_s is not None and self.cpu_s < 1:
            raise SandboxError(f"Limits.cpu_s must be at least 1, got {self.cpu_s!r}")

    @property
    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else max(1, math.ceil(self.timeout_s))


@dataclass(frozen=True)
class Isolation:
    """What the probe found: the interpreter, the user, the network and file-system isolation."""

    python: str
    as_root: bool
    network: bool
    mounts: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run.

    ``reason`` is None when the tests passed, else one of: ``syntax`` (the answer does not
    compile), ``assertion`` (a test failed), ``exception`` (anything else raised), ``exit``
    (SystemExit), ``no_result`` (the process ended without the runner's verdict, e.g.
    ``os._exit``), ``timeout`` (wall clock), ``cpu_time`` (RLIMIT_CPU), ``memory``
    (MemoryError under RLIMIT_AS), ``processes`` (fork or a thread refused), ``file_size``
    (EFBIG), ``disk`` (ENOSPC), ``network`` (a connection or name lookup failed), ``crash``
    (killed by another signal), ``sandbox_error`` (the sandbox could not be set up).
    """

    passed: bool
    reason: str | None
    message: str
    elapsed_s: float
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    setup: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """A JSON-ready summary for :attr:`ItemScore.details <.scoring.ItemScore.details>`."""
        return {
            "reason": self.reason,
            "message": self.message,
            "elapsed_s": round(self.elapsed_s, 3),
            "returncode": self.returncode,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "sandbox": self.setup,
        }


class Sandbox:
    """Runs code under :class:`Limits`, at most ``slots`` runs at a time. Thread-safe.

    ``python`` names the sandbox's interpreter (default: probed, see the module docstring);
    ``uid_base`` the first uid of the slots when running as root.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        slots: int = 4,
        python: str | None = None,
        uid_base: int = DEFAULT_UID_BASE,
    ) -> None:
        if slots < 1:
            raise SandboxError(f"slots must be at least 1, got {slots!r}")
        self.limits = limits or Limits()
        self._python = python
        self._uid_base = uid_base
        self._free = list(range(slots))
        self._slots = threading.Condition()
        self._probe_lock = threading.Lock()
        self._isolation: Isolation | None = None
        self._root = os.geteuid() == 0

    # --- probing -------------------------------------------------------------------

    @property
    def isolation(self) -> Isolation:
        """What this machine allows (probed on first use, once)."""
        with self._probe_lock:
            if self._isolation is None:
                self._isolation = self._probe()
            return self._isolation

    def _probe(self) -> Isolation:
        candidates = [self._python] if self._python else _interpreters()
        notes: list[str] = []
        probe_limits = replace(self.limits, timeout_s=max(self.limits.timeout_s, 30.0))
        for python in candidates:
            trial = Isolation(python, self._root, network=False, mounts=self._root)
            with self._slot() as slot:
                result = self._run(trial, slot, "pass", "pass", probe_limits, require=False)
            if result.passed:
                setup = result.setup
                return Isolation(
                    python,
                    self._root,
                    network=bool(setup.get("network")),
                    mounts=bool(setup.get("mounts")),
                    notes=tuple(notes),
                )
            notes.append(f"{python}: {result.reason}: {result.message or result.stderr}")
        raise SandboxError(
            "the sandbox found no interpreter its user can run ("
            + "; ".join(notes)
            + "): pass python= an interpreter outside any private home directory"
        )

    # --- running -------------------------------------------------------------------

    def run(self, code: str, tests: str, *, limits: Limits | None = None) -> RunResult:
        """Run ``code`` then ``tests`` in one namespace; passed iff nothing raised in time."""
        isolation = self.isolation
        with self._slot() as slot:
            return self._run(isolation, slot, code, tests, limits or self.limits, require=True)

    def close(self) -> None:
        """Nothing is kept running between runs; here for symmetry with the scorers."""

    def _slot(self) -> _Slot:
        return _Slot(self)

    def _run(
        self,
        isolation: Isolation,
        slot: int,
        code: str,
        tests: str,
        limits: Limits,
        *,
        require: bool,
    ) -> RunResult:
        if not self._root:
            return self._run_as(None, isolation, code, tests, limits, require=require)
        with _claimed_uid(self._uid_base + slot) as uid:
            return self._run_as(uid, isolation, code, tests, limits, require=require)

    def _run_as(
        self,
        uid: int | None,
        isolation: Isolation,
        code: str,
        tests: str,
        limits: Limits,
        *,
        require: bool,
    ) -> RunResult:
        if uid is not None:
            self._reap(uid)  # whatever a killed run of this slot may have left
        nonce = secrets.token_hex(16)
        with tempfile.TemporaryDirectory(prefix="vibesdk-sandbox-") as tmp:
            work = Path(tmp, "work")
            work.mkdir()
            if uid is not None:
                os.chown(work, uid, uid)
            read_end, write_end = os.pipe()
            config = {
                "uid": uid,
                "gid": uid,
                "mounts": isolation.mounts,
                "require_network": require and isolation.network,
                "disk_bytes": limits.disk_bytes,
                "python": isolation.python,
                "runner": str(_RUNNER),
                "result_fd": write_end,
                "limits": {
                    "cpu_s": limits.cpu_seconds,
                    "memory_bytes": limits.memory_bytes,
                    "processes": limits.processes,
                    "file_bytes": limits.file_bytes,
                    "open_files": limits.open_files,
                },
            }
            job = json.dumps({"nonce": nonce, "code": code, "tests": tests}).encode()
            out_path, err_path = Path(tmp, "stdout"), Path(tmp, "stderr")
            start = time.monotonic()
            timed_out = False
            with out_path.open("wb") as out, err_path.open("wb") as err:
                try:
                    process = subprocess.Popen(  # noqa: S603 -- our own launcher, no shell
                        [sys.executable, "-I", "-S", str(_LAUNCHER), json.dumps(config)],
                        stdin=subprocess.PIPE,
                        stdout=out,
                        stderr=err,
                        cwd=work,
                        env={},
                        pass_fds=(write_end,),
                        start_new_session=True,
                    )
                finally:
                    os.close(write_end)
                try:
                    process.communicate(job, timeout=limits.timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                except BrokenPipeError:  # it died before reading the job; its status says why
                    pass
                _kill_session(process)
                process.wait()
                if uid is not None:
                    self._reap(uid)
            elapsed = time.monotonic() - start
            lines = _drain(read_end).decode(errors="replace").splitlines()
            stdout, stderr = _tail(out_path), _tail(err_path)
        ended = _Ended(lines, process.returncode, timed_out, elapsed, stdout, stderr)
        return _verdict(ended, nonce, limits)

    def _reap(self, uid: int) -> None:
        """Kill every process of the slot's uid (see the launcher's ``--reap``)."""
        subprocess.run(  # noqa: S603 -- our own launcher, no shell
            [sys.executable, "-I", "-S", str(_LAUNCHER), "--reap", str(uid), str(uid)],
            env={},
            check=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )


#: Where the uids' lock files live, and how many uids above ``uid_base`` a run may try.
_UID_LOCKS = Path(tempfile.gettempdir(), "vibesdk-sandbox-uids")
_UID_RANGE = 4096


@contextlib.contextmanager
def _claimed_uid(first: int) -> Iterator[int]:
    """Hold a uid, ``first`` or the next one free, that no other run on this machine holds.

    Every run reaps its uid's processes before and after it, so two runs sharing a uid (two
    sandboxes, in one process or two) would kill each other's code. An exclusive ``flock`` on a
    file per uid says who holds it; the kernel drops it when the holder exits, however it exits.
    """
    _UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
    for uid in range(first, first + _UID_RANGE):
        fd = os.open(_UID_LOCKS / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            os.close(fd)
        return
    raise SandboxError(f"every sandbox uid from {first} to {first + _UID_RANGE - 1} is in use")


class _Slot:
    """A context manager holding one of the sandbox's slots (its index)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._index = -1

    def __enter__(self) -> int:
        condition = self._sandbox._slots
        with condition:
            condition.wait_for(lambda: bool(self._sandbox._free))
            self._index = self._sandbox._free.pop()
        return self._index

    def __exit__(self, *exc: object) -> None:
        condition = self._sandbox._slots
        with condition:
            self._sandbox._free.append(self._index)
            condition.notify()


def _interpreters() -> list[str]:
    found = [sys.executable]
    for name in ("python3", "/usr/bin/python3", "/usr/local/bin/python3"):
        path = shutil.which(name)
        if path and os.path.realpath(path) not in map(os.path.realpath, found):
            found.append(path)
    return found


def _drain(fd: int) -> bytes:
    """What is in the pipe now, without waiting: a process that left the session (not root:
    nobody reaps it) may still hold its write end. The runner wrote before it exited."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while len(data) < 64 * 1024:
            chunk = os.read(fd, 64 * 1024)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return data


def _kill_session(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(path: Path) -> str:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4 * _TAIL))
        return f.read().decode(errors="replace")[-_TAIL:]


_NETWORK_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN}


@dataclass(frozen=True)
class _Ended:
    """How a run's process ended, as the parent saw it."""

    lines: list[str]  # what came through the result pipe
    returncode: int | None
    timed_out: bool
    elapsed: float
    stdout: str
    stderr: str


def _verdict(ended: _Ended, nonce: str, limits: Limits) -> RunResult:
    records: list[dict[str, Any]] = []
    for line in ended.lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    setup: dict[str, Any] = records[0].get("setup", {}) if records else {}
    outcome = records[1] if len(records) > 1 else {}
    returncode = ended.returncode
    reason: str | None
    if records and "setup_error" in records[0]:
        reason, message = "sandbox_error", str(records[0]["setup_error"])
    elif ended.timed_out:
        reason, message = "timeout", f"still running after {limits.timeout_s:g} s (wall clock)"
    elif outcome.get("passed") == nonce and returncode == 0:
        reason, message = None, ""
    elif returncode is not None and returncode == -signal.SIGXCPU:
        reason, message = "cpu_time", f"used its {limits.cpu_seconds} s of CPU time"
    elif returncode is not None and returncode < 0:
        signum = -returncode
        name = signal.Signals(signum).name if signum in set(signal.Signals) else str(signum)
        reason, message = "crash", f"killed by {name}"
    elif "types" in outcome:
        reason, message = _classify(outcome), _describe(outcome)
    elif returncode == _SETUP_FAILED:
        reason, message = "sandbox_error", ended.stderr.strip()[-300:] or "the launcher failed"
    else:
        reason, message = "no_result", f"exited with status {returncode} before the tests finished"
    return RunResult(
        reason is None,
        reason,
        message,
        ended.elapsed,
        returncode,
        ended.stdout,
        ended.stderr,
        setup,
    )


# What an exception that stopped the run means, first match wins: (reason, test on the
# exception's type names, errno, phase and message).
_CLASSES: tuple[tuple[str, Callable[[set[str], Any, Any, str], bool]], ...] = (
    ("syntax", lambda types, _, phase, __: "SyntaxError" in types and phase == "answer"),
    ("memory", lambda types, _, __, ___: "MemoryError" in types),
    ("file_size", lambda _, code, __, ___: code == errno.EFBIG),
    ("disk", lambda _, code, __, ___: code in (errno.ENOSPC, errno.EDQUOT)),
    ("processes", lambda types, code, _, __: code == errno.EAGAIN and "OSError" in types),
    ("processes", lambda types, _, __, text: "can't start new thread" in text),
    ("network", lambda types, code, _, __: code in _NETWORK_ERRNOS or "gaierror" in types),
    ("exit", lambda types, _, __, ___: "SystemExit" in types),
    ("assertion", lambda types, _, __, ___: "AssertionError" in types),
)


def _classify(outcome: dict[str, Any]) -> str:
    types = set(outcome.get("types", ()))
    code, phase, text = outcome.get("errno"), outcome.get("phase"), str(outcome.get("message"))
    return next(
        (reason for reason, test in _CLASSES if test(types, code, phase, text)), "exception"
    )


def _describe(outcome: dict[str, Any]) -> str:
    kind = (outcome.get("types") or ["?"])[0]
    message = outcome.get("message") or ""
    return (
        f"{outcome.get('phase')}: {kind}: {message}"
        if message
        else f"{outcome.get('phase')}: {kind}"
    )
