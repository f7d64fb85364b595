"""``vibe release`` and ``vibe incident``: guarded releases and what their rollbacks recorded."""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from vibesdk_server._guard.plan import duration_s
from vibesdk_server._guard.stats import split_text

from .context import Context, Subparsers
from .errors import CliError, ExitCode
from .log import log_table
from .percent import format_bps, parse_percent
from .render import table

__all__ = ["parse_duration", "parse_steps", "register"]

_BARE = re.compile(r"^\d+(?:\.\d+)?$")
_NEXT = {
    "hold": "hold: look again at the next tick",
    "advance": "advance to the next step",
    "pause": "pause for a person",
    "rollback": "roll back to stable",
}


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "release",
        help="guarded releases: the server walks a canary through rollout steps",
        description="A guarded release raises FLAG's rollout step by step while vibe-server's "
        "guard loop compares canary and stable; it advances when a step has its samples and "
        "dwell with every guardrail green, and rolls back on its own when one breaks.",
    )
    commands = group.add_subparsers(dest="release_command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "start",
        parents=[common],
        help="start a guarded release",
        description="Start a guarded release of FLAG's canary. It follows the flag's release plan"
        " (the release: section of its flags file, applied with vibe apply), else the defaults;"
        " each option below overrides its part of the plan.",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument(
        "--steps",
        metavar="LIST",
        help="rollout steps in percent, rising, e.g. 10,25,50,100 (default: the flag's release"
        " plan, else 1,5,10,25,50,100)",
    )
    p.add_argument(
        "--dwell",
        metavar="TIME",
        help="least time per step: 90s, 2m, 1h (default: the plan's, else 2m)",
    )
    p.add_argument(
        "--min-samples",
        type=int,
        metavar="N",
        help="least calls per arm per step (default: the plan's, else 200)",
    )
    p.add_argument("--reason", help="why; recorded in the audit log")
    p.set_defaults(handler=start)

    p = commands.add_parser(
        "status", parents=[common], help="state, step, samples and every guardrail's verdict"
    )
    p.add_argument("flag", help="flag key")
    p.set_defaults(handler=status)

    for name, text in (
        ("pause", "hold the release at its step (the rollout stays)"),
        ("resume", "run a paused release again (its step starts over)"),
        ("promote", "go to the next step now"),
        ("abort", "rollout 0%% and end the release as rolled back (records an incident)"),
    ):
        p = commands.add_parser(name, parents=[common], help=text)
        p.add_argument("flag", help="flag key")
        p.add_argument("--reason", required=True, help="why (required; recorded in the audit log)")
        p.set_defaults(handler=act, release_action=name)

    group = sub.add_parser(
        "incident",
        help="rollbacks of releases and what the guard saw",
        description="Each rollback by the guard (and each vibe release abort) records an "
        "incident: the versions rolled back from and to, the guard's decision with its figures "
        "and bounds, the measurements, and the canary's last logged calls (the request log).",
    )
    commands = group.add_subparsers(dest="incident_command", metavar="COMMAND", required=True)
    p = commands.add_parser("list", parents=[common], help="incidents of the environment")
    p.set_defaults(handler=list_incidents)
    p = commands.add_parser("show", parents=[common], help="one incident in full")
    p.add_argument("id", type=int, help="incident id (vibe incident list)")
    p.set_defaults(handler=show_incident)


def parse_steps(text: str) -> list[int]:
    """``--steps``: comma-separated percentages (``10,25,50,100``; ``0.5%`` and ``50bps`` too)."""
    out = []
    for item in text.split(","):
        value = item.strip()
        if not value:
            raise CliError.usage(f"--steps {text!r}: an empty step; write e.g. 10,25,50,100")
        out.append(parse_percent(value + "%" if _BARE.match(value) else value))
    return out


def parse_duration(text: str, option: str = "--dwell") -> float:
    """``90s``, ``2m``, ``1h`` or plain seconds, as seconds."""
    seconds = duration_s(text, bare_s=1.0)
    if seconds is None:
        raise CliError.usage(f"{option} {text!r}: give a duration such as 90s, 2m or 1h")
    return seconds


def _release_path(ctx: Context, flag: str, *action: str) -> str:
    return ctx.api.env_path("flags", flag, "release", *action)


def start(args: argparse.Namespace, ctx: Context) -> int:
    body: dict[str, Any] = {"reason": args.reason}
    if args.steps is not None:
        body["steps"] = parse_steps(args.steps)
    if args.dwell is not None:
        body["min_dwell_s"] = parse_duration(args.dwell)
    if args.min_samples is not None:
        if args.min_samples < 1:
            raise CliError.usage(f"--min-samples {args.min_samples}: give 1 or more")
        body["min_samples_per_arm"] = args.min_samples
    release = ctx.api.post(_release_path(ctx, args.flag), body)
    if ctx.json_output:
        ctx.emit_json(release)
        return ExitCode.OK
    steps = " -> ".join(format_bps(s) for s in release["steps"])
    ctx.out(
        f"release {release['id']} of {args.flag} in {release['environment']}: {release['state']}"
        f" at {format_bps(release['steps'][0])} (steps {steps}; each needs"
        f" {release['min_dwell_s']:g} s and {release['min_samples']} calls per arm)"
    )
    ctx.out(f"plan: {plan_text(release)}")
    return ExitCode.OK


_OPTION = {
    "steps": "--steps",
    "dwell": "--dwell",
    "min_samples": "--min-samples",
    "guardrails": "guardrails",
}


def plan_text(release: dict[str, Any]) -> str:
    """Which plan a release runs: the flags file's (and its version) or the defaults, and what
    the start command overrode."""
    plan = release.get("plan") or {}
    if plan.get("source") == "flags file":
        text = f"the flags file's release section (applied in version {plan.get('version')})"
    else:
        text = "the defaults (the flag's file has no release section)"
    overrides = [_OPTION.get(o, o) for o in plan.get("overrides") or ()]
    if overrides:
        text += f", overridden by {', '.join(overrides)}"
    changed = sorted((plan.get("guardrails") or {}).items())
    if changed:
        text += "; guardrails " + ", ".join(
            f"{name} off" if spec == "off" else f"{name} {_spec(spec)}".rstrip()
            for name, spec in changed
        )
    return text


def _spec(spec: dict[str, Any]) -> str:
    return " ".join(f"{k} {v}" for k, v in sorted(spec.items()))


def _fmt(value: Any) -> str | None:
    return None if value is None else f"{value:.4g}"


def _guardrails(evidence: list[dict[str, Any]]) -> str:
    """One row per guardrail: what it compares, estimate, bound, limit, samples, verdict."""
    return table(
        ["guardrail", "contrast", "estimate", "bound", "limit", "n canary", "n stable", "verdict"],
        (
            [
                e["name"],
                f"{e['contrast']} {e['metric']}",
                _fmt(e["estimate"]),
                _fmt(e["bound"]),
                f"{e['limit']:g}",
                e["n_canary"],
                e["n_stable"],
                e["verdict"],
            ]
            for e in evidence
        ),
    )


def status(args: argparse.Namespace, ctx: Context) -> int:
    release = ctx.api.get(_release_path(ctx, args.flag))
    if ctx.json_output:
        ctx.emit_json(release)
        return ExitCode.OK
    steps = release["steps"]
    step = int(release["step"])
    ctx.out(
        f"release {release['id']} of {args.flag} in {release['environment']}:"
        f" {release['state']}, step {step + 1} of {len(steps)} at {format_bps(steps[step])}"
        f" ({' -> '.join(format_bps(s) for s in steps)})"
    )
    if release["state"] == "running":
        dwell = max(0.0, time.time() - float(release["step_started_s"]))
        ctx.out(f"dwell: {dwell:.0f} s of {release['min_dwell_s']:g} s")
    ctx.out(f"plan: {plan_text(release)}")
    if release.get("state_reason"):
        ctx.out(f"why: {release['state_reason']}")
    for alarm in release.get("eval_alarms") or ():
        ctx.out(f"alarm: {alarm['message']}")
    decision = release.get("decision")
    if not decision:
        ctx.out("no decision yet: the guard has not looked at this step")
        return ExitCode.OK
    srm = decision["srm"]
    ctx.out(
        f"samples: {srm['canary_calls']} canary / {srm['stable_calls']} stable calls (each arm"
        f" needs {decision['min_samples_per_arm']}) at {release.get('decision_at')}"
    )
    ctx.out(f"split: {split_text(srm)}, sample-ratio test p {srm['p_value']:.2g}")
    ctx.out()
    ctx.out(_guardrails(decision["evidence"]))
    ctx.out()
    if release["state"] == "running":
        ctx.out(f"next: {_NEXT[decision['action']]}")
    else:
        ctx.out(f"next: nothing; the release is {release['state']}")
    return ExitCode.OK


def act(args: argparse.Namespace, ctx: Context) -> int:
    action = args.release_action
    release = ctx.api.post(_release_path(ctx, args.flag, action), {"reason": args.reason})
    if ctx.json_output:
        ctx.emit_json(release)
        return ExitCode.OK
    bps = 0 if release["state"] == "rolled_back" else release["steps"][release["step"]]
    ctx.out(
        f"release {release['id']} of {args.flag}: {release['state']}, rollout {format_bps(bps)}"
    )
    return ExitCode.OK


def list_incidents(args: argparse.Namespace, ctx: Context) -> int:
    incidents = ctx.api.get("/v1/admin/incidents", params={"environment": ctx.environment})
    if ctx.json_output:
        ctx.emit_json(incidents)
        return ExitCode.OK
    if not incidents:
        ctx.out(f"no incidents in environment {ctx.environment!r}")
        return ExitCode.OK
    ctx.out(
        table(
            ["id", "at", "flag", "versions", "by", "reason"],
            (
                [
                    i["id"],
                    i["at"],
                    i["flag_key"],
                    f"{i['from_version']} -> {i['to_version']}",
                    i["actor"],
                    i["reason"],
                ]
                for i in incidents
            ),
        )
    )
    return ExitCode.OK


def show_incident(args: argparse.Namespace, ctx: Context) -> int:
    incident = ctx.api.get(f"/v1/admin/incidents/{args.id}")
    if ctx.json_output:
        ctx.emit_json(incident)
        return ExitCode.OK
    ctx.out(
        f"incident {incident['id']} at {incident['at']}: {incident['flag_key']} in"
        f" {incident['environment']} rolled back by {incident['actor']}, version"
        f" {incident['from_version']} -> {incident['to_version']}"
    )
    ctx.out(f"why: {incident['reason']}")
    decision = incident.get("decision") or {}
    if decision.get("evidence"):
        ctx.out()
        ctx.out(_guardrails(decision["evidence"]))
    if incident.get("measurements") is not None:
        ctx.out()
        ctx.out("measurements at the decision:")
        ctx.out(json.dumps(incident["measurements"], indent=2, sort_keys=True))
    requests = incident.get("request_log") or []
    ctx.out()
    if requests:
        ctx.out(f"the canary's last {len(requests)} logged calls (vibe log --json for all fields):")
        ctx.out(log_table(requests))
    else:
        ctx.out("no logged canary calls (a variant's log_share in the flag document logs them)")
    return ExitCode.OK
