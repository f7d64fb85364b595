"""The code sandbox: every limit holds, is reported by name, and leaves nothing behind.

Each test breaks one limit on purpose with tight limits (a few MiB, a handful of processes,
seconds), so that a broken limit shows up as a failed assertion, not as a machine in trouble.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vibesdk_server._eval.sandbox import (
    DEFAULT_UID_BASE,
    Limits,
    RunResult,
    Sandbox,
    SandboxError,
)

MiB = 1 << 20
TIGHT = Limits(
    timeout_s=20.0,
    memory_bytes=256 * MiB,
    processes=12,
    file_bytes=1 * MiB,
    disk_bytes=8 * MiB,
)
SLACK_S = 10.0  # process start, reaping and a busy two-core machine

root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="uid slots, the process limit and mounts need root (as in CI)"
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(TIGHT, slots=2)
    yield box
    box.close()


def _sandbox_processes() -> list[int]:
    """Live processes of any sandbox slot uid (root mode)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                continue
            if DEFAULT_UID_BASE <= uid < DEFAULT_UID_BASE + 100 and state not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def test_code_that_passes_its_tests_passes(sandbox: Sandbox) -> None:
    """Answer code and tests share one namespace; nothing raised means passed."""
    result = sandbox.run("def double(x):\n    return 2 * x\n", "assert double(21) == 42\n")
    assert result.passed, result.details()
    assert result.reason is None


def test_a_failing_assertion_is_reported(sandbox: Sandbox) -> None:
    """A test's AssertionError fails the run with reason 'assertion'."""
    result = sandbox.run("def double(x):\n    return x\n", "assert double(21) == 42\n")
    assert (result.passed, result.reason) == (False, "assertion")
    assert "AssertionError" in result.stderr


def test_an_answer_that_does_not_compile_is_a_syntax_failure(sandbox: Sandbox) -> None:
    """A SyntaxError in the answer is 'syntax', with the compiler's message."""
    result = sandbox.run("def f(x) return x\n", "pass\n")
    assert result.reason == "syntax"
    assert "SyntaxError" in result.message


def test_leaving_early_does_not_pass(sandbox: Sandbox) -> None:
    """os._exit(0) before the tests ran is 'no_result', not a pass; sys.exit is 'exit'."""
    assert sandbox.run("import os\nos._exit(0)\n", "pass\n").reason == "no_result"
    assert sandbox.run("import sys\nsys.exit(0)\n", "pass\n").reason == "exit"


def test_main_blocks_of_the_answer_do_not_run(sandbox: Sandbox) -> None:
    """The answer's `if __name__ == "__main__":` demo (reading stdin) is not run."""
    code = "def f():\n    return 1\nif __name__ == '__main__':\n    input()\n"
    assert sandbox.run(code, "assert f() == 1\n").passed


def test_a_memory_hog_is_stopped_by_the_address_space_limit(sandbox: Sandbox) -> None:
    """Allocating 1 GiB under a 256 MiB limit raises MemoryError: reason 'memory'."""
    result = sandbox.run("hog = bytearray(1 << 30)\n", "pass\n")
    assert result.reason == "memory", result.details()


def test_an_infinite_loop_is_stopped_by_the_cpu_limit(sandbox: Sandbox) -> None:
    """A busy loop gets SIGXCPU after cpu_s seconds, well before the wall clock."""
    limits = Limits(timeout_s=30.0, cpu_s=2, memory_bytes=256 * MiB, processes=12)
    start = time.monotonic()
    result = sandbox.run("while True:\n    pass\n", "pass\n", limits=limits)
    assert result.reason == "cpu_time", result.details()
    assert time.monotonic() - start < 2 + SLACK_S


def test_sleeping_code_is_stopped_by_the_wall_clock(sandbox: Sandbox) -> None:
    """Code that waits without using CPU is killed at timeout_s: reason 'timeout'."""
    limits = Limits(timeout_s=2.0, memory_bytes=256 * MiB, processes=12)
    start = time.monotonic()
    result = sandbox.run("import time\ntime.sleep(3600)\n", "pass\n", limits=limits)
    assert result.reason == "timeout", result.details()
    assert time.monotonic() - start < 2 + SLACK_S


def test_a_file_size_bomb_is_stopped(sandbox: Sandbox) -> None:
    """Writing 4 MiB into one file under a 1 MiB limit fails with EFBIG: 'file_size'."""
    code = "with open('big', 'wb') as f:\n    f.write(b'x' * (4 << 20))\n"
    result = sandbox.run(code, "pass\n")
    assert result.reason == "file_size", result.details()


def test_output_is_bounded_by_the_file_size_limit(sandbox: Sandbox) -> None:
    """Printing without end hits the same limit instead of filling the parent's memory."""
    result = sandbox.run("while True:\n    print('y' * 1000)\n", "pass\n")
    assert result.reason == "file_size", result.details()
    assert len(result.stdout) <= 2000


@root_only
def test_many_files_fill_only_the_private_tmpfs(sandbox: Sandbox) -> None:
    """Many small files end at the tmpfs size (ENOSPC: 'disk'); the root fs is read-only."""
    code = (
        "for i in range(64):\n"
        "    with open(f'f{i}', 'wb') as f:\n"
        "        f.write(b'x' * (512 << 10))\n"
    )
    result = sandbox.run(code, "pass\n")
    assert result.reason == "disk", result.details()
    # A path on the root file system itself (not under /tmp, which the sandbox replaces).
    outside = Path("/") / f"vibesdk-sandbox-escape-{os.getpid()}"
    try:
        escape = sandbox.run(f"open({str(outside)!r}, 'w')\n", "pass\n")
        assert escape.reason == "exception"
        assert "Read-only file system" in escape.message
        assert not outside.exists()
    finally:
        outside.unlink(missing_ok=True)


@root_only
def test_a_bounded_fork_flood_is_refused_past_the_process_limit(sandbox: Sandbox) -> None:
    """64 forks under a limit of 12 processes: fork fails with EAGAIN, reason 'processes'."""
    code = (
        "import os, time\n"
        "for _ in range(64):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(2)\n"
        "        os._exit(0)\n"
    )
    result = sandbox.run(code, "pass\n")
    assert result.reason == "processes", result.details()
    assert _sandbox_processes() == []


@root_only
def test_a_fork_bomb_is_contained_and_every_process_killed(sandbox: Sandbox) -> None:
    """A bomb whose processes leave the session and keep forking is stopped; none survives."""
    limits = Limits(timeout_s=3.0, cpu_s=3, memory_bytes=256 * MiB, processes=12)
    code = (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            os.setsid()\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
    )
    start = time.monotonic()
    result = sandbox.run(code, "pass\n", limits=limits)
    assert result.reason == "timeout", result.details()
    assert time.monotonic() - start < 3 + SLACK_S
    assert _sandbox_processes() == []
    # The machine (and the sandbox) still work.
    assert sandbox.run("x = 1\n", "assert x == 1\n").passed


class _LoopbackServer:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_the_network_is_out_of_reach(sandbox: Sandbox) -> None:
    """Connecting to a loopback server the test runs fails inside: reason 'network'."""
    if not sandbox.isolation.network:
        pytest.skip("no network namespace here (docs/concepts/evaluation.md says what then)")
    server = _LoopbackServer()
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {server.port}), timeout=5)\n"
        result = sandbox.run(code, "pass\n")
    finally:
        server.close()
    assert result.reason == "network", result.details()
    assert server.accepted == 0
    assert result.setup["network"] is True


def test_the_parents_environment_is_not_visible(tmp_path: Path) -> None:
    """A secret in the parent's environment is neither inherited nor readable through /proc.

    The parent is a process started with the secret in its environment from the start (what
    /proc/PID/environ shows), as a service holding API keys would be.
    """
    secret = "vibesdk-eval-secret-7f3a91"
    code = (
        "import os\n"
        "seen = repr(dict(os.environ))\n"
        "for pid in ('self', str(os.getppid()), '1'):\n"
        "    try:\n"
        "        with open(f'/proc/{pid}/environ', 'rb') as f:\n"
        "            seen += f.read().decode(errors='replace')\n"
        "    except OSError:\n"
        "        pass\n"
        "# Nothing inherited; LC_CTYPE is the interpreter's own C-locale coercion (PEP 538).\n"
        "names = set(os.environ) - {'LC_CTYPE'}\n"
    )
    tests = f"assert {secret!r} not in seen, 'the secret leaked'\nassert not names, names\n"
    parent = tmp_path / "parent.py"
    parent.write_text(
        "import json, sys\n"
        "from vibesdk_server._eval.sandbox import Sandbox\n"
        f"result = Sandbox(slots=1).run({code!r}, {tests!r})\n"
        "print(json.dumps(result.details()))\n"
    )
    env = {**os.environ, "VIBESDK_EVAL_TEST_SECRET": secret}
    done = subprocess.run(
        [sys.executable, str(parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    details = json.loads(done.stdout)
    assert details["reason"] is None, details


def test_a_slot_is_reused_after_a_killed_run(sandbox: Sandbox) -> None:
    """After timeouts and crashes the sandbox keeps serving normal runs, in parallel too."""
    results: list[bool] = []

    def one() -> None:
        results.append(sandbox.run("x = 2\n", "assert x * x == 4\n").passed)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 4


@root_only
def test_two_sandboxes_at_once_never_share_a_uid() -> None:
    """Every run kills its uid's processes before and after, so two sandboxes (two scorers in
    one process, or in two: the lock files are the same to both) must never run under one uid
    at once: a slow run of one survives a stream of quick runs of the other."""
    slow_box, quick_box = Sandbox(TIGHT, slots=1), Sandbox(TIGHT, slots=1)
    slow: list[RunResult] = []
    thread = threading.Thread(
        target=lambda: slow.append(slow_box.run("import time\ntime.sleep(4)\n", "pass"))
    )
    thread.start()
    quick = 0
    while thread.is_alive():
        assert quick_box.run("x = 1\n", "assert x == 1\n").passed
        quick += 1
    thread.join()
    assert quick >= 2
    assert slow[0].passed, (slow[0].reason, slow[0].message)


NOT_ROOT_SCRIPT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("sandbox", sys.argv[1])
sandbox = importlib.util.module_from_spec(spec)
sys.modules["sandbox"] = sandbox
spec.loader.exec_module(sandbox)
box = sandbox.Sandbox(sandbox.Limits(timeout_s=20, processes=8, memory_bytes=256 << 20))
flood = "import os\\nfor _ in range(64):\\n    if os.fork() == 0:\\n        os._exit(0)\\n"
net = "import socket\\nsocket.create_connection(('127.0.0.1', 9), timeout=5)\\n"
print(json.dumps({
    "network": box.isolation.network,
    "flood": box.run(flood, "pass").reason,
    "net": box.run(net, "pass").reason,
    "hog": box.run("hog = bytearray(1 << 30)", "pass").reason,
}))
"""


@root_only
def test_not_as_root_the_limits_hold_in_the_callers_own_uid() -> None:
    """Run by an ordinary user (nobody), the sandbox still bounds processes and memory, and
    cuts the network where the kernel allows a user namespace (reported either way)."""
    here = Path(__file__).resolve().parents[1] / "src" / "vibesdk_server" / "_eval"
    python = Sandbox(slots=1).isolation.python  # one that a user without a home can run
    # pytest's tmp_path is private to root; nobody needs a directory it can read.
    with tempfile.TemporaryDirectory(prefix="vibesdk-not-root-") as tmp:
        top = Path(tmp)
        for name in ("sandbox.py", "_sandbox_launcher.py", "_sandbox_runner.py"):
            (top / name).write_text((here / name).read_text())
        (top / "run.py").write_text(NOT_ROOT_SCRIPT)
        for path in (top, *top.iterdir()):
            path.chmod(0o755)
        done = subprocess.run(
            [python, str(top / "run.py"), str(top / "sandbox.py")],
            cwd=top,
            env={},
            user=65534,
            group=65534,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert (seen["flood"], seen["hog"]) == ("processes", "memory"), seen
    assert seen["net"] == ("network" if seen["network"] else "exception"), seen


def test_bad_limits_are_refused_with_a_clear_message() -> None:
    """A non-positive limit raises SandboxError naming it."""
    with pytest.raises(SandboxError, match=r"Limits\.memory_bytes must be positive"):
        Limits(memory_bytes=0)
    with pytest.raises(SandboxError, match="slots must be at least 1"):
        Sandbox(slots=0)
