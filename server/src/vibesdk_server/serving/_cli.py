"""``vibe-serve``: start llama-server instances of a launch profile and keep them running.

    vibe-serve --profile cpu-small --model smollm2
    vibe-serve --profile cpu-small --model gemma3-270m --port 8082
    vibe-serve --profile h100-vibethinker --model vibethinker --write-urls canary.yaml
    vibe-serve --profile h100-vibethinker --model ./vt-q8_0.gguf --instances 2 -- --seed 1
    vibe-serve --profile auto --model vibethinker       # h100-/h200-vibethinker by the GPU's name
    vibe-serve --list

Prints one line per instance once all are healthy, writes the variant's backend fragment
(``backend.urls`` etc.) when asked, and stops every instance on Ctrl-C / SIGTERM.
Arguments after ``--`` go to every llama-server unchanged.

A bundled model (smollm2, gemma3-270m, vibethinker) is served with its own defaults: the name
it answers as (``--alias`` changes it), its chat template and its stop strings -- see
:mod:`vibesdk_server.serving.models`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from vibesdk import VibeError

from ._gpu import AUTO_PROFILES, resolve_profile
from ._process import find_llama_server, free_ports, launch_args, serve
from ._profiles import PROFILES, ServerProfile
from ._settings import load_serving_settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vibe-serve", description=__doc__.split("\n")[0])
    p.add_argument(
        "--profile",
        default="cpu-small",
        help="launch profile (see --list), or auto / auto-topk: the VibeThinker profile for this "
        "machine's GPU, read with nvidia-smi",
    )
    p.add_argument(
        "--model",
        default="smollm2",
        help="smollm2 | gemma3-270m | vibethinker (VIBESDK_VIBETHINKER_GGUF) | a .gguf path",
    )
    p.add_argument(
        "--alias",
        help="model name the servers answer as (default: the bundled model's, e.g. "
        "smollm2-135m-instruct; none for a .gguf path)",
    )
    p.add_argument("--instances", type=int, help="llama-server processes (default: the profile's)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port",
        type=int,
        action="append",
        dest="ports",
        help="port of an instance (repeat per instance; default: free ports)",
    )
    p.add_argument(
        "--binary",
        type=Path,
        help="llama-server to run (default: VIBESDK_LLAMA_SERVER, then builds)",
    )
    p.add_argument(
        "--log-dir", type=Path, help="where each instance's log goes (default: a temp dir)"
    )
    p.add_argument(
        "--write-urls", type=Path, help="write the variant's backend fragment (.json or .yaml)"
    )
    p.add_argument(
        "--model-name", help="model name written with the URLs (default: the file's stem)"
    )
    p.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for /health")
    p.add_argument("--print-args", action="store_true", help="print the command lines and exit")
    p.add_argument("--list", action="store_true", help="list the profiles and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1 :]
    args = _parser().parse_args(args_in)

    if args.list:
        width = max(map(len, PROFILES))
        for name in sorted(PROFILES):
            print(f"{name:{width}} {PROFILES[name].description}")
        print(f"{'auto':{width}} h200-vibethinker on an H200, h100-vibethinker on an H100")
        print(f"{'auto-topk':{width}} the same, their -topk twins")
        return 0
    try:
        profile = resolve_profile(args.profile)
    except KeyError as exc:
        print(f"vibe-serve: {exc.args[0]}", file=sys.stderr)
        return 2
    except VibeError as exc:
        print(f"vibe-serve: {exc}", file=sys.stderr)
        return 1
    if args.profile in AUTO_PROFILES:
        print(f"vibe-serve: --profile {args.profile} picked {profile.name}", file=sys.stderr)
    return _run(args, profile, extra)


def _run(args: argparse.Namespace, profile: ServerProfile, extra: list[str]) -> int:
    """Print the command lines, or start the instances and keep them until a signal."""
    try:
        if args.print_args:
            from . import models

            settings = load_serving_settings()
            exe = find_llama_server(args.binary, settings)
            model = models.resolve(args.model, settings)
            model_args, _ = launch_args(args.model, args.alias, extra)
            # the profile's environment defaults this environment leaves to it, as a shell sets them
            unset = [f"{k}={v}" for k, v in profile.env if k not in os.environ]
            count = args.instances or profile.instances
            # as serve() picks them: ports free now, so each line runs as printed
            for port in args.ports or free_ports(count, args.host):
                line = [str(exe), *profile.args(model, host=args.host, port=port), *model_args]
                print(shlex.join([*unset, *line, *extra]))
            return 0

        stop = threading.Event()

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        group = serve(
            args.model,
            profile,
            instances=args.instances,
            binary=args.binary,
            host=args.host,
            ports=args.ports,
            ready_timeout_s=args.ready_timeout,
            log_dir=args.log_dir,
            extra_args=extra,
            alias=args.alias,
        )
    except VibeError as exc:
        print(f"vibe-serve: {exc}", file=sys.stderr)
        return 1
    with group:
        for server in group:
            print(
                f"ready  {server.url}  pid {server.process.pid}  log {server.log_path}", flush=True
            )
        if args.write_urls:
            group.write_urls(args.write_urls, model_name=args.model_name)
            print(f"wrote  {args.write_urls}", flush=True)
        else:
            print(json.dumps(group.backend_config(model_name=args.model_name)), flush=True)
        while not stop.wait(1.0):
            dead = [s for s in group if not s.running()]
            if dead:
                print(
                    f"vibe-serve: llama-server on port {dead[0].port} exited "
                    f"(code {dead[0].process.returncode}); stopping",
                    file=sys.stderr,
                )
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
