"""``vibe demo``: the whole canary story on one machine, on loopback, on the CPU.

It starts the flag server (SQLite in a temporary directory, its guard looking
every second), two real models served by llama.cpp's ``llama-server`` -- stable:
SmolLM2-135M-Instruct, canary: Gemma 3 270M standing in for VibeThinker-1.5B --
reviews the prompts and applies ``examples/flags.yaml`` with the ``vibe`` CLI (at
0%), runs the example product app (``examples/product_app``, exporting its
measurements to the server every second) and starts a **guarded release** of the
canary with ``vibe release start`` (25% -> 50% -> 100%, short steps chosen for the
demo: ``--dwell``, 20 calls per arm). Simulated users then ask in three phases:
at 25% until the guard, seeing a healthy canary, advances it to 50% on its own; at
50%, during which the canary's model server is killed (users keep getting answers
from stable, the fallbacks show up) until the guard rolls the release back on its
own; and after that rollback. Nobody runs ``vibe rollout`` or ``vibe rollback``:
the demo prints the guard's writes and the incident it recorded (``vibe incident
show``: what it saw). At the end it prints the users, latencies, fallbacks and
output-check failures per variant, how long each of the guard's writes took to
reach the app, and where the traces are. With ``--no-kill`` the canary stays
healthy and the story ends at 50%.

The models run in llama.cpp's own ``llama-server``, built from the llama.cpp tree
that llama-cpp-python's source distribution vendors (server/llama/build.sh), not in
``python -m llama_cpp.server``: that server answers one request at a time behind a
global lock and aborts the request in flight when a new one arrives, while the demo's
users ask concurrently; ``llama-server`` has parallel slots, ``/health`` and
``/metrics``, and is what the GPU canary runs in production too.

Gemma 3 270M is a base model without a chat template, so the canary's
llama-server gets a completion-style template ("system prompt, blank line,
problem, ``Answer:``") instead; a real VibeThinker GGUF (``--canary-gguf
PATH``, or ``VIBESDK_VIBETHINKER_GGUF`` with ``--canary-gguf vibethinker``) is
served with its own template. Needs a llama.cpp build from
``server/llama/build.sh`` (``./scripts/demo`` makes one); the example files it
reads ship with ``vibesdk-server`` (:func:`examples_dir`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from .demo_report import UNKNOWN, Flip, Outcome, Phase, render, summarize

__all__ = ["main"]

FLAG = "vibethinker"
CANARY_ALIAS = "vibethinker-1.5b"
STABLE_ALIAS = "smollm2-135m-instruct"

# A base model has no chat template: render the conversation as a plain
# completion prompt the model can continue.
COMPLETION_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}{{ m['content'] }}\n"
    "{% else %}Answer: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Answer:{% endif %}"
)

# (prompt id, model it is reviewed for, user template, file under examples/prompts/)
PROMPTS = (
    ("assistant-stable", STABLE_ALIAS, "{input}", "assistant-stable.txt"),
    ("vibethinker-reasoning", CANARY_ALIAS, "Problem: {input}", "vibethinker-reasoning.txt"),
)

# The guarded release the demo starts: short steps so that the story fits in a few minutes.
# The server's defaults (1 -> 5 -> 10 -> 25 -> 50 -> 100%, 2 minutes and 200 calls per arm and
# step, a look every 5 s, SDK exports every 5 s) are for production traffic, not 20 users.
RELEASE_STEPS_BPS = (2500, 5000, 10_000)
MIN_SAMPLES = 20  # the default guardrails judge nothing on fewer than 20 calls per arm anyway
GUARD_INTERVAL_S = 1.0
EXPORT_INTERVAL_S = 1.0

QUESTIONS = (
    "What is 17 * 23?",
    "Is 91 a prime number?",
    "What is the derivative of x^3 + 2x?",
    "Solve for x: 3x + 7 = 22.",
    "What is the sum of the integers from 1 to 100?",
    "How many ways can 4 people stand in a line?",
    "Write a Python function that reverses a string.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Write a Python one-liner that counts the vowels in a string.",
    "Write a Python function that checks whether a number is prime.",
    "What is the greatest common divisor of 48 and 36?",
    "What is 2 to the power of 10?",
)


class DemoError(Exception):
    """A step of the demo failed; the message says which and what to do."""


@dataclass(frozen=True)
class Options:
    users: int
    concurrency: int
    quick: bool
    kill_canary: bool
    stable_gguf: str
    canary_gguf: str
    flags_file: Path
    examples: Path
    workdir: Path | None
    clean: bool
    summary_json: Path | None
    serve: bool
    max_tokens: int | None
    seed: int
    dwell_s: float = 20.0
    guard_wait_s: float = 240.0


def examples_dir() -> Path:
    """Where the demo's ``flags.yaml``, ``prompts/`` and ``product_app/`` are.

    An installed wheel carries a copy of the repository's ``examples/`` as ``demo_data/``
    next to this module (server/hatch_build.py); an editable install reads the checkout's.
    """
    here = Path(__file__).resolve().parent
    shipped = here / "demo_data"
    if (shipped / "flags.yaml").is_file():
        return shipped
    # server/src/vibesdk_server/_vibe -> the checkout's root
    return here.parents[3] / "examples"


def parse_args(argv: Sequence[str]) -> Options:
    """The demo's options (``vibe demo --help``)."""
    examples = examples_dir()
    parser = argparse.ArgumentParser(
        prog="vibe demo",
        description="Run the canary story end to end on loopback: flag server, two llama.cpp "
        "models, the example product app, simulated users, a guarded release that advances on "
        "its own, a killed canary and the guard's rollback.",
    )
    parser.add_argument("--users", type=int, default=None, help="simulated users (default 200)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="users asking at once (default 6)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="short run: 20 users, 16-token answers"
    )
    parser.add_argument(
        "--no-kill",
        dest="kill_canary",
        action="store_false",
        help="keep the canary model server alive",
    )
    parser.add_argument(
        "--stable-gguf",
        default="smollm2",
        help="stable model: a GGUF path or smollm2 (default)",
    )
    parser.add_argument(
        "--canary-gguf",
        default="gemma3-270m",
        help="canary model: a GGUF path, gemma3-270m (default) or vibethinker "
        "(VIBESDK_VIBETHINKER_GGUF)",
    )
    parser.add_argument("--flags", type=Path, default=examples / "flags.yaml", help="the flag file")
    parser.add_argument(
        "--examples",
        type=Path,
        default=examples,
        help="the directory with prompts/ and product_app/ (default: the copy that ships "
        "with vibesdk-server)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="put the databases, logs and traces here (default: a new directory under the "
        "system's temporary directory, kept for a look at the traces afterwards)",
    )
    parser.add_argument("--clean", action="store_true", help="remove the work directory at the end")
    parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--max-tokens", type=int, help="override every variant's max_tokens")
    parser.add_argument("--seed", type=int, default=7, help="seed for questions and feedback")
    parser.add_argument(
        "--dwell",
        type=float,
        default=None,
        help="seconds each release step must run before the guard advances it "
        "(default 20, 10 with --quick)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="after the summary, keep the flag server, models and app running until Ctrl-C",
    )
    ns = parser.parse_args(list(argv))
    users = ns.users if ns.users is not None else (20 if ns.quick else 200)
    if users < 3:
        parser.error("--users must be at least 3")
    concurrency = ns.concurrency if ns.concurrency is not None else (4 if ns.quick else 6)
    if concurrency < 1:
        parser.error("--concurrency must be at least 1")
    max_tokens = ns.max_tokens if ns.max_tokens is not None else (16 if ns.quick else None)
    dwell_s = ns.dwell if ns.dwell is not None else (10.0 if ns.quick else 20.0)
    if not 0 <= dwell_s <= 600:
        parser.error("--dwell must be between 0 and 600 seconds, e.g. --dwell 10")
    return Options(
        users=users,
        concurrency=concurrency,
        quick=ns.quick,
        kill_canary=ns.kill_canary,
        stable_gguf=ns.stable_gguf,
        canary_gguf=ns.canary_gguf,
        flags_file=ns.flags,
        examples=ns.examples,
        workdir=ns.workdir,
        clean=ns.clean,
        summary_json=ns.summary_json,
        serve=ns.serve,
        max_tokens=max_tokens,
        seed=ns.seed,
        dwell_s=dwell_s,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when every user got an answer, 1 otherwise or on a failed step."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    with contextlib.ExitStack() as stack:
        if opts.workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="vibe-demo-"))
        else:
            workdir = opts.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        keep = not opts.clean
        if not keep:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        demo = _Demo(opts, workdir, keep=keep, out=sys.stdout)
        try:
            return demo.run(stack)
        except DemoError as exc:
            print(f"\nvibe demo: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nvibe demo: interrupted; stopping everything it started", file=sys.stderr)
            return 130


class _Demo:
    def __init__(self, opts: Options, workdir: Path, *, keep: bool, out: TextIO) -> None:
        self.opts = opts
        self.workdir = workdir
        self.keep = keep
        self.out = out
        self.started = time.monotonic()
        self.step_no = 0
        self.env: dict[str, str] = {}
        self.app_url = ""
        self.server: Any = None
        self.reviewer = ""
        self.canary: Any = None
        self.next_user = 0

    # -- output ------------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, title: str) -> None:
        self.step_no += 1
        elapsed = time.monotonic() - self.started
        self.say(f"\n[{self.step_no}/6 {elapsed:5.1f}s] {title}")

    # -- the story ---------------------------------------------------------------------------

    def run(self, stack: contextlib.ExitStack) -> int:
        opts = self.opts
        self.say(
            f"vibe demo: {opts.users} simulated users, {opts.concurrency} at a time, "
            f"everything on 127.0.0.1 (work dir {self.workdir}"
            f"{'' if self.keep else ', removed at the end'})"
        )
        self._check_files()
        self.step("flag server (vibe-server, SQLite)")
        self._start_flag_server(stack)
        self.step("model servers (llama.cpp llama-server, CPU)")
        stable_urls, canary_urls = self._start_models(stack)
        self.step("flags: review the prompts, apply examples/flags.yaml, mark it good")
        self._apply_flags(stable_urls, canary_urls)
        self.step("product app (examples/product_app, using vibesdk.Client)")
        traces = self._start_app(stack)
        self.step("traffic from simulated users")
        outcomes, phases, flips = self._traffic()
        self.step("summary")
        summary = summarize(outcomes, phases, flips)
        summary["traces"] = str(traces)
        summary.update(self._guard_story())
        summary["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.say(render(summary))
        self._say_traces(traces)
        if opts.summary_json is not None:
            opts.summary_json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        self.say(f"\ndone in {summary['elapsed_s']:.0f} s")
        if opts.serve:
            self._serve_until_interrupted()
        return 0 if summary["errors"] == 0 else 1

    def _guard_story(self) -> dict[str, Any]:
        """The release as the server ends it, the guard's writes and the incidents."""
        env = self.env["VIBESDK_ENVIRONMENT"]
        release = self._admin_get(f"environments/{env}/flags/{FLAG}/release")
        audit = self._admin_get("audit", environment=env, limit=100)
        return {
            "release": {
                k: release.get(k) for k in ("id", "state", "steps", "step", "state_reason")
            },
            "guard_actions": [
                {"action": a["action"], "actor": a["actor"], "version": a["version"]}
                for a in reversed(audit)
                if a["action"].startswith("release_")
            ],
            "incidents": [
                {k: i.get(k) for k in ("id", "actor", "from_version", "to_version", "reason")}
                for i in self._admin_get("incidents", environment=env)
            ],
        }

    def _serve_until_interrupted(self) -> None:
        self.say(
            f"\nstill running (--serve): the app at {self.app_url}/ , the flag server at "
            f"{self.env['VIBESDK_SERVER_URL']} -- try, in another shell:\n"
            f"  export VIBESDK_SERVER_URL={self.env['VIBESDK_SERVER_URL']} "
            f"VIBESDK_ADMIN_TOKEN={self.env['VIBESDK_ADMIN_TOKEN']}\n"
            f"  vibe status {FLAG}; vibe history {FLAG}; vibe rollout {FLAG} 100%\n"
            "Ctrl-C stops everything."
        )
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)

    def _check_files(self) -> None:
        app = self.opts.examples / "product_app" / "app.py"
        for path in (self.opts.flags_file, app):
            if not path.is_file():
                raise DemoError(
                    f"{path} is missing: give --examples and --flags (the vibesdk "
                    "repository's examples/), or reinstall vibesdk-server"
                )

    def _start_flag_server(self, stack: contextlib.ExitStack) -> None:
        testing = _import("vibesdk_server.testing", "vibesdk-server")
        db = self.workdir / "flags.db"
        admin = self._server_cli(
            ["token", "create", "--db", str(db), "--kind", "admin", "--name", "alice"]
        )
        # Four-eyes review: the author of a prompt cannot approve it; bob reviews.
        self.reviewer = self._server_cli(
            ["token", "create", "--db", str(db), "--kind", "admin", "--name", "bob"]
        )
        sdk = self._server_cli(
            [
                "token",
                "create",
                "--db",
                str(db),
                "--kind",
                "sdk",
                "--env",
                "default",
                "--name",
                "product-app",
            ]
        )
        server = testing.FlagServerProcess(
            db,
            environment="default",
            admin_token=admin,
            sdk_key=sdk,
            reviewer_token=self.reviewer,
            guard_interval_s=GUARD_INTERVAL_S,
        )
        server.start()
        stack.callback(server.stop)
        self.server = server
        self.env = {
            "VIBESDK_SERVER_URL": server.url,
            "VIBESDK_ADMIN_TOKEN": admin,
            "VIBESDK_ENVIRONMENT": "default",
        }
        self.say(f"  vibe-server --db {db} --guard-interval-s {GUARD_INTERVAL_S:g} -> {server.url}")
        self.say(
            "  tokens: admins 'alice' (ops) and 'bob' (prompt reviewer) for vibe, "
            "SDK key 'product-app' for the app"
        )

    def _server_cli(self, args: list[str]) -> str:
        command = [sys.executable, "-m", "vibesdk_server", *args]
        done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            command, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DemoError(f"vibe-server {' '.join(args[:2])} failed: {done.stderr.strip()}")
        lines = [ln.strip() for ln in done.stdout.splitlines() if ln.strip()]
        if not lines:
            raise DemoError(f"vibe-server {' '.join(args[:2])} printed no secret")
        return lines[-1].split()[-1]

    def _start_models(self, stack: contextlib.ExitStack) -> tuple[list[str], list[str]]:
        serving = _import("vibesdk_server.serving", "vibesdk-server")
        cpus = os.cpu_count() or 2
        base = serving.get_profile("cpu-small")
        logs = self.workdir / "llama-logs"
        # One thread each on a small machine: llama.cpp's threads spin-wait for each
        # other, and with more threads than free cores (two servers, the app, the
        # users) decoding collapses -- measured here on 2 cores: 4 parallel streams of
        # SmolLM2 gave 52 tokens/s with 1 thread and 2.3 tokens/s with 2. Stable, which
        # takes most of the traffic, runs as two instances instead (one per core), and
        # the SDK spreads the variant's calls over both URLs.
        stable_threads = 1 if cpus <= 2 else min(4, cpus // 2)
        canary_threads = 1 if cpus <= 4 else 2
        stable_profile = base.with_overrides(parallel=2, threads=stable_threads, instances=2)
        canary_profile = base.with_overrides(parallel=2, threads=canary_threads)
        canary_extra = ["--alias", CANARY_ALIAS]
        if _is_base_gemma(self.opts.canary_gguf):
            canary_extra += ["--chat-template", COMPLETION_TEMPLATE]
        t0 = time.monotonic()
        groups: dict[str, Any] = {}
        errors: list[BaseException] = []

        def start(name: str, model: str, profile: Any, extra: list[str]) -> None:
            try:
                groups[name] = serving.serve(model, profile, log_dir=logs, extra_args=extra)
            except Exception as exc:  # reported below, after both attempts ended
                errors.append(exc)

        # Both load at once: each waits mostly on disk and its own warm-up.
        threads = [
            threading.Thread(
                target=start,
                args=("stable", self.opts.stable_gguf, stable_profile, ["--alias", STABLE_ALIAS]),
            ),
            threading.Thread(
                target=start,
                args=("canary", self.opts.canary_gguf, canary_profile, canary_extra),
            ),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for group in groups.values():
            stack.callback(group.stop)
        if errors:
            raise DemoError(f"could not start llama-server: {errors[0]}") from errors[0]
        stable, canary = groups["stable"], groups["canary"]
        self.canary = canary
        stable_urls, canary_urls = list(stable.urls), list(canary.urls)
        self.say(f"  stable: {stable.model.name} as {STABLE_ALIAS!r} -> {', '.join(stable_urls)}")
        stand_in = " (standing in for VibeThinker-1.5B)" if "gemma" in canary.model.name else ""
        canary_where = ", ".join(canary_urls)
        self.say(f"  canary: {canary.model.name}{stand_in} as {CANARY_ALIAS!r} -> {canary_where}")
        self.say(f"  both answered /health in {time.monotonic() - t0:.1f} s; logs in {logs}")
        return stable_urls, canary_urls

    def _apply_flags(self, stable_urls: list[str], canary_urls: list[str]) -> None:
        import yaml

        from vibesdk_server._domain._strict_yaml import load

        prompts_dir = self.opts.examples / "prompts"
        for prompt_id, model, user_template, filename in PROMPTS:
            self._vibe(
                [
                    "prompt",
                    "add",
                    "--id",
                    prompt_id,
                    "--model",
                    model,
                    "--system-file",
                    str(prompts_dir / filename),
                    "--user-template",
                    user_template,
                ]
            )
            self._vibe(
                ["prompt", "approve", prompt_id, "1", "--reason", "reviewed for the demo"],
                token=self.reviewer,
                who="bob",
            )
        data = load(self.opts.flags_file.read_text(encoding="utf-8"))
        for flag in data["flags"]:
            if flag["key"] != FLAG:
                continue
            flag["variants"]["stable"]["backend"]["urls"] = stable_urls
            flag["variants"]["canary"]["backend"]["urls"] = canary_urls
            # The guarded release, not the file, sets the canary's share.
            flag["rollout_bps"] = 0
            # Two CPU models sharing this machine's cores with everything else: how fast each
            # answers says nothing about the canary, so the demo's release does not judge it.
            release = flag.setdefault("release", {})
            release.setdefault("guardrails", {})["slow_calls"] = "off"
            if self.opts.max_tokens is not None:
                for variant in flag["variants"].values():
                    variant.setdefault("params", {})["max_tokens"] = self.opts.max_tokens
        applied = self.workdir / "flags.yaml"
        applied.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        self.say(
            f"  (the model URLs in {self.opts.flags_file.name} rewritten to the ports above, its "
            "rollout to 0%: the guarded release sets it, and its release plan's slow_calls "
            "guardrail off: two CPU models on one machine are slow for reasons not the canary's)"
        )
        self._vibe(["apply", str(applied), "--yes", "--reason", "demo: canary reviewed, at 0%"])
        self._vibe(["mark-good", "--reason", "the state to roll back to"])

    def _vibe(
        self,
        args: list[str],
        *,
        quiet: bool = False,
        token: str | None = None,
        who: str = "alice",
        lines: int = 12,
    ) -> tuple[str, float]:
        """Run the real ``vibe`` CLI against the demo's flag server; return stdout and seconds.

        ``token`` (default: alice's) is the admin token; ``who`` names its owner in the output;
        the first ``lines`` lines of its output are shown.
        """
        command = [
            sys.executable,
            "-c",
            "import sys; from vibesdk_server._vibe.main import main; sys.exit(main())",
            *args,
        ]
        shown = "vibe " + " ".join(shlex.quote(a) for a in args)
        self.say(f"  {who}$ {shown}")
        env = {**os.environ, **self.env}
        if token is not None:
            env["VIBESDK_ADMIN_TOKEN"] = token
        t0 = time.monotonic()
        done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            command,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        took = time.monotonic() - t0
        if done.returncode != 0:
            raise DemoError(f"`{shown}` exited {done.returncode}: {done.stderr.strip()}")
        if not quiet:
            for line in done.stdout.rstrip().splitlines()[:lines]:
                self.say(f"    {line}")
        return done.stdout, took

    def _start_app(self, stack: contextlib.ExitStack) -> Path:
        serving = _import("vibesdk_server.serving", "vibesdk-server")
        port = int(serving.free_port())
        traces = self.workdir / "traces.jsonl"
        log = (self.workdir / "product-app.log").open("wb")
        stack.callback(log.close)
        env = {
            **os.environ,
            "VIBESDK_SERVER_URL": self.env["VIBESDK_SERVER_URL"],
            "VIBESDK_SDK_KEY": self.server.sdk_key,
            "VIBESDK_CACHE_DIR": str(self.workdir / "sdk-cache"),
            # The guard judges what the app measured: send it every second, not every 5 s.
            "VIBESDK_SERVER_METRICS_INTERVAL_S": str(EXPORT_INTERVAL_S),
        }
        env.pop("VIBESDK_ADMIN_TOKEN", None)
        app = self.opts.examples / "product_app" / "app.py"
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and example app
            [sys.executable, str(app), "--port", str(port), "--traces", str(traces)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        stack.callback(_stop_process, process)
        self.app_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise DemoError(
                    f"the product app exited with {process.returncode}; see "
                    f"{self.workdir / 'product-app.log'}"
                )
            with contextlib.suppress(httpx.TransportError):
                flags = httpx.get(self.app_url + "/api/flags", timeout=2).json()
                if flags.get("version"):
                    break
            if time.monotonic() > deadline:
                raise DemoError("the product app did not come up within 60 s")
            time.sleep(0.1)
        self.say(f"  python {app} --port {port} --traces {traces}")
        self.say(
            f"  {self.app_url}/ serves flag version {flags['version']} ({flags['state']})"
            + ("; open it in a browser to ask a question yourself" if self.opts.serve else "")
        )
        return traces

    # -- traffic -----------------------------------------------------------------------------

    def _traffic(self) -> tuple[list[Outcome], list[Phase], list[Flip]]:
        opts = self.opts
        n1 = max(1, round(opts.users * 0.5))
        n2 = max(1, round(opts.users * 0.3))
        n3 = max(1, opts.users - n1 - n2)
        kill_at = n2 // 3 if opts.kill_canary else None
        first, second = RELEASE_STEPS_BPS[0], RELEASE_STEPS_BPS[1]
        phases = [
            Phase(1, f"guarded release at {first / 100:g}%", first),
            Phase(
                2,
                f"advanced to {second / 100:g}% by the guard",
                second,
                note=f"canary server killed after {kill_at} of its users"
                if kill_at is not None
                else "",
            ),
        ]
        rng = random.Random(opts.seed)  # noqa: S311 - simulated users
        outcomes: list[Outcome] = []
        flips: list[Flip] = []
        watch = _AppWatch(self.app_url)
        watch.start()
        try:
            with httpx.Client(base_url=self.app_url, timeout=120) as http:
                steps = ",".join(f"{bps / 100:g}" for bps in RELEASE_STEPS_BPS)
                self._vibe(
                    [
                        "release",
                        "start",
                        FLAG,
                        "--steps",
                        steps,
                        "--dwell",
                        f"{opts.dwell_s:g}s",
                        "--min-samples",
                        str(MIN_SAMPLES),
                        "--reason",
                        "demo: a guarded release of the canary",
                    ]
                )
                deadline = time.monotonic() + 30
                while watch.rollout_bps != first and time.monotonic() < deadline:
                    time.sleep(0.02)  # the release's first step reaching the app (push)
                self.say(
                    f"  phase 1: at least {n1} users at {first / 100:g}%, until the guard "
                    f"advances the healthy canary (each step: {opts.dwell_s:g} s and "
                    f"{MIN_SAMPLES} calls per arm; the guard looks every {GUARD_INTERVAL_S:g} s)"
                )
                outcomes += self._run_users(
                    http, 1, n1, rng, until=lambda: watch.rollout_bps in (0, second)
                )
                if watch.rollout_bps == 0:
                    # The guard found the healthy canary worse than its guardrails allow.
                    self._show_incident()
                    raise DemoError(
                        "the guard rolled the canary back before the demo broke it: its incident, "
                        "above, says which guardrail and why"
                    )
                if (watch.rollout_bps or 0) < second:
                    raise DemoError(
                        f"the guard did not advance the healthy canary within "
                        f"{opts.guard_wait_s:g} s; `vibe release status {FLAG}` says why"
                    )
                flips.append(self._guard_flip("release_advance", watch))
                self.say(
                    f"  phase 2: at least {n2} users at {second / 100:g}%"
                    + (
                        f"; the canary's llama-server is killed after {kill_at}, and users "
                        "keep asking until the guard rolls it back"
                        if kill_at is not None
                        else ""
                    )
                )
                outcomes += self._run_users(
                    http,
                    2,
                    n2,
                    rng,
                    at=(kill_at, self._kill_canary) if kill_at is not None else None,
                    until=(lambda: watch.rollout_bps == 0) if kill_at is not None else None,
                )
                if kill_at is not None:
                    if watch.rollout_bps != 0:
                        raise DemoError(
                            f"the guard did not roll back the broken canary within "
                            f"{opts.guard_wait_s:g} s; `vibe release status {FLAG}` says why"
                        )
                    flips.append(self._guard_flip("release_rollback", watch))
                    self._show_incident()
                    phases.append(Phase(3, "rolled back by the guard", 0))
                    self.say(f"  phase 3: {n3} users after the guard's rollback")
                    outcomes += self._run_users(http, 3, n3, rng)
        finally:
            watch.stop()
        return outcomes, phases, flips

    def _kill_canary(self) -> None:
        for server in self.canary.servers:
            server.process.kill()
            server.process.wait()
        self.say(
            "\n  !! killed the canary's llama-server (SIGKILL); "
            "its users should fall back to stable"
        )

    def _admin_get(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            f"{self.env['VIBESDK_SERVER_URL']}/v1/admin/{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.env['VIBESDK_ADMIN_TOKEN']}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def _guard_flip(self, action: str, watch: _AppWatch) -> Flip:
        """The guard's newest ``action`` and how long its version took to reach the app."""
        audit = self._admin_get("audit", environment=self.env["VIBESDK_ENVIRONMENT"], limit=50)
        entry = next(a for a in audit if a["action"] == action)
        version = int(entry["version"])
        written = _unix(entry["at"])
        seen = watch.seen(version)
        reach = None if seen is None else max(0.0, seen - written)
        what = action.removeprefix("release_")
        reason = str(entry["reason"]).removeprefix("guard: ")
        self.say(f"  {entry['actor']} wrote version {version}, {what}: {reason}")
        if reach is not None:
            self.say(f"  -> the app served version {version} {reach * 1000:.0f} ms after the write")
        return Flip(f"guard {what}", version, 0.0, reach, actor=str(entry["actor"]))

    def _show_incident(self) -> None:
        incidents = self._admin_get("incidents", environment=self.env["VIBESDK_ENVIRONMENT"])
        if not incidents:
            raise DemoError("the guard rolled back but recorded no incident")
        self.say("  what the guard saw:")
        self._vibe(["incident", "list"], lines=6)
        self._vibe(["incident", "show", str(incidents[0]["id"])], lines=14)

    def _run_users(
        self,
        http: httpx.Client,
        phase: int,
        minimum: int,
        rng: random.Random,
        *,
        at: tuple[int, Callable[[], None]] | None = None,
        until: Callable[[], bool] | None = None,
    ) -> list[Outcome]:
        """At least ``minimum`` users, and then more until ``until()`` (or the guard wait)."""
        results: list[Outcome] = []
        lock = threading.Lock()
        progress = _Progress(self.out, total=minimum, phase=phase)
        deadline = time.monotonic() + self.opts.guard_wait_s

        def one(user_id: str, question: str, luck: float) -> Outcome:
            outcome = _ask(http, phase, user_id, question, luck)
            with lock:
                results.append(outcome)
                progress.update(results)
            return outcome

        with ThreadPoolExecutor(self.opts.concurrency, thread_name_prefix="demo-user") as pool:
            futures: list[Future[Outcome]] = []
            index = 0
            while index < minimum or (
                until is not None and not until() and time.monotonic() < deadline
            ):
                if at is not None and index == at[0]:
                    # Let the users already asking finish first, so the kill lands
                    # between requests rather than inside one.
                    for f in futures:
                        f.result()
                    at[1]()
                self.next_user += 1
                item = (f"user-{self.next_user:04d}", rng.choice(QUESTIONS), rng.random())
                futures.append(pool.submit(one, *item))
                index += 1
                # Keep at most `concurrency` requests queued, so a kill lands at the
                # planned user and progress is smooth.
                while sum(1 for f in futures if not f.done()) >= self.opts.concurrency:
                    time.sleep(0.01)
            for f in futures:
                f.result()
        progress.finish(results)
        return results

    def _say_traces(self, traces: Path) -> None:
        # The app flushes its exporters when it stops; stop it first to read them all.
        spans = 0
        with contextlib.suppress(OSError):
            spans = sum(1 for _ in traces.open(encoding="utf-8"))
        self.say(
            f"\ntraces: {traces} ({spans} spans so far, one JSON object per line; "
            "metrics beside it)"
        )
        self.say(
            "  e.g. the canary's calls: "
            f'grep \'"feature_flag.result.variant": "canary"\' {traces} | head -1'
        )
        if not self.keep:
            self.say("  (--clean: the work dir is removed at exit)")


class _AppWatch:
    """Polls the app's ``/api/flags`` every 20 ms: when it first served each version and rollout."""

    def __init__(self, app_url: str) -> None:
        self.url = app_url + "/api/flags"
        self.rollout_bps: int | None = None
        self.first_seen: dict[int, float] = {}  # version -> unix time the app first served it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-app-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def seen(self, version: int) -> float | None:
        """When the app first served ``version`` or a later one."""
        times = [t for v, t in self.first_seen.items() if v >= version]
        return min(times) if times else None

    def _run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self._stop.wait(0.02):
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                    flags = http.get(self.url).json()
                    version = flags["version"]
                    if version is not None:
                        self.first_seen.setdefault(int(version), time.time())
                    self.rollout_bps = flags["rollout_bps"]


def _unix(timestamp: str) -> float:
    """An ISO 8601 time from the server (``...Z`` or ``+00:00``) as unix seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _ask(http: httpx.Client, phase: int, user_id: str, question: str, luck: float) -> Outcome:
    t0 = time.monotonic()
    try:
        response = http.post("/api/ask", json={"user_id": user_id, "question": question})
        latency = time.monotonic() - t0
        if response.status_code != 200:
            return Outcome(
                phase, user_id, UNKNOWN, "none", latency, error=f"HTTP {response.status_code}"
            )
        body = response.json()
    except httpx.HTTPError as exc:
        return Outcome(
            phase, user_id, UNKNOWN, "none", time.monotonic() - t0, error=type(exc).__name__
        )
    failures = tuple(body.get("quality_failures") or ())
    score: int | None = None
    if luck < 0.3:
        # About a third of the users rate their answer: worse when a check failed.
        score = 2 if failures else 3 + int(luck * 10) % 3
        with contextlib.suppress(httpx.HTTPError):
            http.post("/api/feedback", json={"trace_id": body["trace_id"], "score": score})
    return Outcome(
        phase=phase,
        user_id=user_id,
        assigned=body["assigned_variant"],
        answered_by=body["variant"],
        latency_s=latency,
        fallback=bool(body["fallback"]),
        fallback_reason=body.get("fallback_reason"),
        quality_failures=failures,
        feedback_score=score,
    )


class _Progress:
    """One line per phase, redrawn in place on a terminal, every ~10% otherwise.

    ``total`` is the planned number of users; a phase that waits for the guard goes past it.
    """

    def __init__(self, out: TextIO, *, total: int, phase: int) -> None:
        self.out = out
        self.total = total
        self.phase = phase
        self.tty = out.isatty()
        self.last = -1.0
        self.last_bucket = -1

    def _line(self, results: Sequence[Outcome]) -> str:
        done = len(results)
        canary = sum(1 for r in results if r.assigned not in {"stable", UNKNOWN})
        fallbacks = sum(1 for r in results if r.fallback)
        errors = sum(1 for r in results if r.error is not None)
        width = 24
        filled = min(width, int(width * done / self.total)) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        return (
            f"    [{bar}] {done:4d}/{self.total} users  canary {canary:3d}  "
            f"fallbacks {fallbacks:3d}  errors {errors}"
        )

    def update(self, results: Sequence[Outcome]) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.2:
                self.last = now
                print("\r" + self._line(results), end="", file=self.out, flush=True)
            return
        done = len(results)
        # Every ~10% of the planned users; past them (waiting for the guard), every 10 users.
        bucket = 10 * done // max(1, self.total) if done < self.total else 10 + done // 10
        if bucket != self.last_bucket and done != self.total:
            self.last_bucket = bucket
            print(self._line(results), file=self.out, flush=True)

    def finish(self, results: Sequence[Outcome]) -> None:
        prefix = "\r" if self.tty else ""
        print(prefix + self._line(results), file=self.out, flush=True)


def _is_base_gemma(model: str) -> bool:
    """Whether ``model`` names Gemma 3 270M, the base model served with the completion template."""
    name = Path(model).name.lower().replace("_", "-")
    return model == "gemma3-270m" or name.startswith("gemma-3-270m")


def _import(module: str, dist: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DemoError(
            f"vibe demo needs {dist} ({exc}); ./scripts/demo installs everything"
        ) from exc


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
