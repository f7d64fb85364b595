"""The benchmark plans as data: which servers start, in which order, and the cells each one runs.

A plan is a list of :class:`Step`; ``run_bench.py --plan NAME --list`` prints one (no GPU needed),
``run_bench.py --plan NAME`` runs it. ``--only`` picks configurations by name (``configs.py``):
the ``quick``, ``sweep`` and ``headline`` plans run the named ones (``headline`` in its own order,
names it does not hold appended with its cells), ``matrix`` and ``all2`` run them in place of their
defaults, every other plan keeps only its steps of those names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from configs import (
    Config,
    UnknownConfigError,
    legacy_tuned,
    legacy_tuned_mps,
    profile,
    resolve,
    variants,
)
from vibesdk_server.serving import ServerProfile, profile_for_gpu

from vibesdk import ConfigError

Cell = tuple[int, ...]  # (concurrency, n_predict[, requests per stream])
FULL: Sequence[Cell] = [(c, n) for n in (256, 1024) for c in (1, 4, 16, 32, 64)] + [(16, 512)]
SWEEP: list[Cell] = [(1, 256), (16, 256), (64, 256)]
# The answer table's cells, in the order of its targets: tokens/s in total at 64 streams, per
# stream at one, P95 end-to-end at 16 x 512.
HEADLINE: list[Cell] = [(64, 256), (1, 256), (16, 512)]
HEADLINE_MPS: list[Cell] = [(64, 256), (16, 512)]
# Chat requests sent directly and through vibesdk.AsyncClient, in turn, on one server group.
DIRECT_THEN_SDK = (("direct-aiohttp", "aiohttp"), ("vibesdk-AsyncClient", "sdk"))
SDK_FIRST = (
    ("vibesdk-AsyncClient", "sdk"),
    ("direct-aiohttp", "aiohttp"),
    ("vibesdk-AsyncClient-2", "sdk"),
)

# Seconds, as the H100 runs measured them: one llama-server of these profiles was ready 1.3-2.5 s
# after it was started (startup_s in results/h100-run5/6), and a cell spends ~1 s beyond its
# requests (client processes, the first request's prompt).
SERVER_START_S = 2.5
CELL_OVERHEAD_S = 1.5


@dataclass(frozen=True)
class Step:
    """One server configuration (or llama-cpp-python, or transformers) and what runs on it.

    ``mps``: True starts the CUDA MPS control daemon first (and the step is skipped if it does
    not start), False stops a daemon this run started, None leaves it as it is. ``mps_tag``
    appends ``-mps`` to the recorded name while the daemon runs (runs 4-5 named cells so).
    After ``cells``, the same chat requests are sent by each of ``clients`` (record name,
    loadgen client) in turn, ``rounds`` times, at each of ``client_cells``.
    """

    kind: str  # "llama-server", "llama-cpp-python" or "transformers"
    name: str
    cells: tuple[Cell, ...]
    config: Config | None = None
    model: str = "q8_0"  # the model file: MODELS/vt-{model}.gguf
    mps: bool | None = None
    mps_tag: bool = False
    load: dict[str, str] = field(default_factory=dict)
    clients: tuple[tuple[str, str], ...] = ()
    client_cells: tuple[Cell, ...] = ()
    rounds: int = 1


def server(
    name: str | Config,
    cells: Sequence[Cell],
    *,
    mps: bool | None = None,
    **kw: Any,
) -> Step:
    """A llama-server step for the configuration ``name`` (see configs.resolve)."""
    config = resolve(name) if isinstance(name, str) else name
    return Step("llama-server", config.name, tuple(cells), config, mps=mps, **kw)


def named(name: str, prof: ServerProfile) -> Config:
    return Config(name, replace(prof, name=name))


def unpack(cell: Cell) -> tuple[int, int, int]:
    """(concurrency, n_predict, requests per stream) of a cell; one request unless it says."""
    return cell[0], cell[1], cell[2] if len(cell) > 2 else 1


def parse_cells(text: str) -> list[Cell]:
    """``64x256,1x256,16x512x3`` -> [(64, 256), (1, 256), (16, 512, 3)]."""
    cells = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.lower().split("x")
        if len(parts) not in (2, 3) or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"bad cell {item!r}: STREAMSxTOKENS or STREAMSxTOKENSxREQUESTS")
        cells.append(tuple(int(p) for p in parts))
    return cells


def gpu_family(gpu_name: str | None) -> str:
    """The profiles' name prefix for the GPU, as ``vibe-serve --profile auto`` picks it (h200 for
    an H200); h100 without a GPU name or for one no profile is for."""
    if gpu_name is None:
        return "h100"
    try:
        return profile_for_gpu(gpu_name).name.split("-", 1)[0]
    except ConfigError:
        return "h100"


# ---- the plans -------------------------------------------------------------------------------


def headline(family: str, only: Sequence[str]) -> list[Step]:
    """Every figure of the README's answer table for the GPU family, in one call with the build.

    First the three targets with the model card's sampling (the SDK-vs-direct comparison on the
    same servers after them), then each configuration again with stock sampling, the MPS
    profile, the top-k profile; last what the table does not need, which the deadline drops
    first. Profiles are looked up only for the steps that run.
    """
    f = family
    sdk = {"clients": DIRECT_THEN_SDK, "client_cells": ((16, 512),), "rounds": 3}
    plan: list[tuple[str, list[Cell], dict[str, Any]]] = [
        (f"{f}-vibethinker", HEADLINE, sdk),
        (f"{f}-vibethinker+stock-sampling", HEADLINE, {}),
        (f"{f}-vibethinker-mps", HEADLINE_MPS, {}),
        (f"{f}-vibethinker-topk", HEADLINE, {}),
        (f"{f}-vibethinker-topk+stock-sampling", HEADLINE, {}),
        # beyond the table's figures
        ("default", [(16, 512)], {}),
        (f"{f}-vibethinker-mps+stock-sampling", HEADLINE_MPS, {}),
        (f"{f}-vibethinker-mps-topk", HEADLINE_MPS, {}),
        (f"{f}-vibethinker-mps-topk+stock-sampling", HEADLINE_MPS, {}),
    ]
    if only:
        listed = [name for name, _, _ in plan]
        plan = [p for p in plan if p[0] in only] + [(n, [], {}) for n in only if n not in listed]
    steps = []
    for name, cells, kw in plan:
        config = resolve(name)
        several = config.profile.instances > 1
        # MPS for a group of servers (each alone would take turns on the GPU), none for one
        steps.append(
            server(config, cells or (HEADLINE_MPS if several else HEADLINE), mps=several, **kw)
        )
    return steps


def _matrix(only: Sequence[str]) -> list[Step]:
    tuned = named("tuned", legacy_tuned())
    steps: list[Step] = []
    for name in only or ["tuned", "default", "client", "llama-cpp-python", "transformers"]:
        if name == "llama-cpp-python":
            steps.append(Step(name, name, ((1, 256), (4, 256), (16, 256), (1, 1024))))
        elif name == "transformers":
            big = ((1, 256), (4, 256), (16, 256), (32, 256), (64, 256), (64, 1024))
            steps.append(Step(name, name, big))
        elif name == "client":
            # The SDK's path: chat completions through httpx, against the direct aiohttp client
            # on the same server, same cells.
            cells = [(1, 256), (16, 256), (64, 256), (16, 512)]
            for client in ("aiohttp", "httpx"):
                cfg = Config(f"tuned-chat-{client}", tuned.profile)
                steps.append(server(cfg, cells, load={"client": client, "endpoint": "chat"}))
        else:
            steps.append(server(name, FULL))
    return steps


def _all2(only: Sequence[str]) -> list[Step]:
    tuned = named("tuned", legacy_tuned())
    return [
        server(tuned, FULL),
        server(
            Config("client-overhead", tuned.profile),
            (),
            clients=(("direct-aiohttp", "aiohttp"), ("direct-httpx", "httpx"), *SDK_FIRST[:1]),
            client_cells=((1, 256), (16, 256), (64, 256), (16, 512)),
        ),
        server(
            "default", [(c, 256) for c in (1, 4, 16, 32, 64)] + [(16, 512), (1, 1024), (16, 1024)]
        ),
        Step("llama-cpp-python", "llama-cpp-python", ((1, 256), (4, 256), (16, 256), (1, 1024))),
        Step(
            "transformers",
            "transformers",
            ((1, 256), (4, 256), (16, 256), (32, 256), (64, 256), (16, 512)),
        ),
        *(
            server(n, SWEEP)
            for n in only or ["tuned-greedy", "tuned-2x32", "tuned-40k-q8kv", "tuned-4x16"]
        ),
    ]


def _final() -> list[Step]:
    # Why do long answers slow every stream down? Same load (16 streams x 1024 tokens) on fresh
    # servers that differ in one flag each.
    t = legacy_tuned()
    diag = [
        named("diag-np64", t),
        named("diag-np16", replace(t, parallel=16)),
        named("diag-np64-kvu", replace(t, kv_unified=True, kv_pool_tokens=262144)),
        named("diag-np64-cpu-sampling", replace(t, backend_sampling=False)),
    ]
    return [
        Step("transformers", "transformers", ((1, 256), (16, 256), (64, 256), (16, 512))),
        *(server(c, [(16, 1024)]) for c in diag),
        server(
            Config("client-overhead", t),
            (),
            clients=SDK_FIRST,
            client_cells=((16, 512), (64, 256)),
        ),
    ]


def _final2(part: str) -> list[Step]:
    # Session 2's final run on the patched build: the two H100 profiles across the matrix, the
    # SDK interleaved with direct on each, Q4_K_M, and llama-server's defaults.
    t, mps = legacy_tuned(), legacy_tuned_mps()
    sdk: dict[str, Any] = {"clients": SDK_FIRST, "client_cells": ((16, 512), (64, 256))}
    if part == "final2":
        return [server(named("tuned", t), FULL), server(Config("client-overhead", t), (), **sdk)]
    if part == "final2-mps":
        two = replace(mps, name="h100-vibethinker-mps-2x32", instances=2, parallel=32)
        cells = [(1, 256), (16, 512), (64, 256)]
        return [
            server(named("tuned-mps", mps), FULL),
            server(Config("client-overhead", mps), (), **sdk),
            server(Config("tuned-mps-2x32", two), cells),
            Step(
                "llama-server",
                "tuned-mps-2x32-q4",
                tuple(cells),
                Config("tuned-mps-2x32-q4", two),
                "q4_k_m",
            ),
        ]
    return [
        Step("llama-server", "tuned-q4", ((1, 256), (1, 1024)), named("tuned-q4", t), "q4_k_m"),
        server(Config("default", profile("default")), [(1, 256), (16, 512), (64, 256)]),
    ]


def _session2(part: str) -> list[Step]:
    # Session 2. s2a: does the host-RAM prompt cache explain the slowdown of a server that has
    # served before (same cells on one server, twice, with and without it; the last cell sends 3
    # requests per stream, so requests arrive while others decode, as in production); then
    # several servers time-sliced, Q4_K_M, GGML_CUDA_GRAPH_OPT. s2b (run_gpu.sh starts the MPS
    # daemon first): several servers whose kernels overlap. s2c/s2d: the patched build.
    slow: list[Cell] = [(16, 512), (64, 256), (16, 512), (4, 1024), (16, 512, 3)]
    multi: list[Cell] = [(1, 256), (16, 512), (64, 256), (16, 512, 3)]
    steady: list[Cell] = [(16, 512), (64, 256), (16, 512), (16, 512, 3), (64, 256, 3)]
    plans: dict[str, list[tuple[str, str, list[Cell]]]] = {
        "s2a": [
            ("tuned-cache8g", "q8_0", slow),
            ("tuned-ram0", "q8_0", slow),
            ("ram0-4x16", "q8_0", multi),
            ("ram0-graph-opt", "q8_0", [(1, 256), (16, 512)]),
            ("ram0-q4", "q4_k_m", multi),
        ],
        "s2b": [
            ("ram0-4x16", "q8_0", multi),
            ("ram0-8x8", "q8_0", multi),
            ("ram0-16x4", "q8_0", multi),
            ("ram0-2x32", "q8_0", multi),
            ("tuned-ram0", "q8_0", multi),
            ("ram0-q4-8x8", "q4_k_m", multi),
        ],
        "s2c": [("tuned-ram0", "q8_0", steady)],
        "s2d": [("ram0-4x16", "q8_0", steady[1:]), ("ram0-2x32", "q8_0", steady[1:])],
        "s2e": [("tuned-40k-q8kv", "q8_0", [(16, 512), (64, 256), (1, 256)])],
    }
    # s2a-s2d name a cell run under MPS with "-mps" (s2e, run 7, did not)
    tag = part != "s2e"
    return [server(name, cells, model=model, mps_tag=tag) for name, model, cells in plans[part]]


def _q4() -> list[Step]:
    cfg = named("tuned-q4_k_m", legacy_tuned())
    return [Step("llama-server", cfg.name, tuple(SWEEP), cfg, "q4_k_m")]


Builder = Callable[[str, Sequence[str]], list[Step]]


def _fixed(make: Callable[[], list[Step]]) -> Builder:
    """A plan whose steps do not depend on the GPU or the names (build() filters them)."""

    def build(family: str, only: Sequence[str]) -> list[Step]:
        return make()

    return build


def _named(make: Callable[[Sequence[str]], list[Step]]) -> Builder:
    def build(family: str, only: Sequence[str]) -> list[Step]:
        return make(only)

    return build


# plan name -> (builder, whether --only "runs" the names or "filters" the plan's steps)
PLANS: dict[str, tuple[Builder, str]] = {
    "headline": (headline, "runs"),
    "quick": (
        _named(lambda only: [server(n, SWEEP) for n in only or ["default", "tuned"]]),
        "runs",
    ),
    "sweep": (_named(lambda only: [server(n, SWEEP) for n in only or list(variants())]), "runs"),
    "matrix": (_named(_matrix), "runs"),
    "all2": (_named(_all2), "runs"),
    "q4": (_fixed(_q4), "filters"),
    "final": (_fixed(_final), "filters"),
    **{
        p: (_fixed(partial(_final2, p)), "filters") for p in ("final2", "final2-mps", "final2-tail")
    },
    **{p: (_fixed(partial(_session2, p)), "filters") for p in ("s2a", "s2b", "s2c", "s2d", "s2e")},
}
MATRIX_WORDS = ("client", "llama-cpp-python", "transformers")
MODELS = ("q8_0", "q4_k_m", "f16")  # the model files setup writes: MODELS_DIR/vt-{model}.gguf


def build(
    plan: str,
    family: str,
    only: Sequence[str],
    cells: Sequence[Cell] = (),
    model: str | None = None,
) -> list[Step]:
    """The steps of ``plan``; :class:`UnknownConfigError` for a name that is not valid there.

    ``cells`` (when given) replaces the cells of every step that has some; ``model`` (when
    given: ``q8_0``, ``q4_k_m`` or ``f16``) the model file of every llama-server step.
    """
    if model is not None and model not in MODELS:
        raise ValueError(f"unknown model {model!r}; models: {', '.join(MODELS)}")
    if plan not in PLANS:
        raise UnknownConfigError(f"unknown plan {plan!r}; plans: {', '.join(PLANS)}")
    make, how = PLANS[plan]
    if how == "runs":  # every name must mean something before anything starts
        for name in only:
            if not (plan == "matrix" and name in MATRIX_WORDS):
                resolve(name)
    steps = make(family, only)
    if only and how == "filters":
        names = [s.name for s in steps]
        missing = [n for n in only if n not in names]
        if missing:
            raise UnknownConfigError(
                f"plan {plan} has no config {', '.join(missing)}; its configs: {', '.join(names)}"
            )
        steps = [s for s in steps if s.name in only]
    if cells:
        steps = [replace(s, cells=tuple(cells)) if s.cells else s for s in steps]
    if model is not None:
        steps = [replace(s, model=model) if s.kind == "llama-server" else s for s in steps]
    return steps


# ---- estimates ------------------------------------------------------------------------------

# Tokens/s in total measured on one H100 (runs 5-6, Q8_0, top-k 64, stock sampling): one server
# of 64 slots, and 4 x 16 under MPS.
_ONE = {1: 430, 4: 1200, 16: 2000, 32: 2500, 64: 2900}
_MPS = {1: 430, 4: 760, 16: 2500, 32: 3600, 64: 4900}


def prior_tps(prof: ServerProfile, concurrency: int) -> float:
    """A rough tokens/s in total before a cell is measured: the skip logic's first guess.

    Without a top-k cut every sequence sorts the whole vocabulary: 638 against 2,000 tokens/s at
    16 streams in session 1; assumed alike for batched sampling until it is measured.
    """
    if prof.parallel is None:  # llama-server's defaults: 4 slots, the other streams queue
        return min(400.0 * concurrency, 650.0)
    table = _MPS if prof.instances > 1 else _ONE
    near = min(table, key=lambda k: abs(math.log(k) - math.log(max(concurrency, 1))))
    tps = table[near] * (concurrency / near if concurrency < near else 1.0)
    if prof.sampling.top_k == 0:
        tps *= 0.7 if concurrency == 1 else 0.32
    return float(tps)


def cell_seconds(prof: ServerProfile | None, cell: Cell, tps: float | None = None) -> float:
    """A llama-server cell's seconds at ``tps`` (default: the prior); without a profile, one of
    llama-cpp-python's server (one request at a time: 43 tokens/s, 92 in total at 16 streams)."""
    c, n, rps = unpack(cell)
    if tps is None:
        tps = min(43.0 * c, 90.0) if prof is None else prior_tps(prof, c)
    return rps * c * n / max(tps, 1.0) + CELL_OVERHEAD_S


def step_seconds(step: Step) -> float:
    if step.kind == "transformers":  # one batch, 13 tokens/s per sequence, after ~20 s to load
        return 20.0 + sum(n / 13.0 + 5 for _, n, *_ in step.cells)
    prof = step.config.profile if step.config else None
    cells = list(step.cells) + [c for c in step.client_cells for _ in step.clients * step.rounds]
    start = SERVER_START_S if step.kind == "llama-server" else 20.0
    return start + sum(cell_seconds(prof, cell) for cell in cells)


def describe(step: Step) -> str:
    """One line: name, MPS, cells, the clients' rounds, and the estimated seconds."""

    def fmt(cells: Sequence[Cell]) -> str:
        return " ".join("x".join(map(str, c)) for c in cells)

    mps = {True: "on", False: "off", None: "-"}[step.mps]
    text = f"{step.name:44} mps {mps:3} {fmt(step.cells) or '-'}"
    if step.model != "q8_0":
        text += f" ({step.model})"
    if step.clients:
        order = ", ".join(n for n, _ in step.clients)
        text += f"; then chat at {fmt(step.client_cells)}: {order}"
        text += f" x{step.rounds}" if step.rounds > 1 else ""
    return f"{text}  ~{step_seconds(step):.0f} s"
