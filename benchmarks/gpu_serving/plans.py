"""The benchmark plans as data: which servers start, in which order, and the cells each one runs.

A plan is a list of :class:`Step`; ``run_bench.py --plan NAME --list`` prints one (no GPU needed),
``run_bench.py --plan NAME`` runs it. ``--only`` picks configurations by name (``configs.py``):
the ``quick``, ``sweep`` and ``headline`` plans run the named ones (``headline`` in its own order,
names it does not hold appended with its cells), ``matrix`` and ``all2`` run them in place of their
defaults, every other plan keeps only its steps of those names.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from configs import (
    STOCK_HOLES,
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
# The answer table's cells: tokens/s in total at 64 streams and P95 end-to-end at 16 x 512 (plan
# headline runs them on F16 weights, the fastest file from 16 sequences on), and tokens/s per
# stream at one (on Q4_K_M, the fastest file for one sequence).
MANY_STREAMS: list[Cell] = [(64, 256), (16, 512)]
ONE_STREAM: list[Cell] = [(1, 256)]
# A warm-up cell: the step's most streams, this many tokens each (see warmup_cell).
WARMUP_TOKENS = 64
# Chat requests sent directly and through vibesdk.AsyncClient, in turn, on one server group:
# aiohttp (the fastest direct client), then bare httpx (the HTTP library under the SDK, and
# under the openai package), then the SDK, so that the SDK's gap to direct splits into httpx's
# and its own.
DIRECT_THEN_SDK = (
    ("direct-aiohttp", "aiohttp"),
    ("direct-httpx", "httpx"),
    ("vibesdk-AsyncClient", "sdk"),
)
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
    loadgen client) in turn, ``rounds`` times, at each of ``client_cells``. ``warmup``: a cell
    run on the fresh servers before the others and recorded as a warm-up, not a measurement
    (:func:`build` sets it). ``extra``: beyond the answer table, which the deadline drops first.
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
    warmup: Cell | None = None
    extra: bool = False


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

    Each one-server profile runs twice, on the file that wins its cells: 64 x 256 and 16 x 512
    on F16, then one stream on Q4_K_M (a server of its own). First the model card's sampling
    (the SDK-vs-direct comparison on its F16 servers), then top-k, then both with stock
    sampling; last what the table does not need, which the deadline drops first: the model card
    on Q8_0 side by side, llama-server's defaults, the MPS profiles (on F16). Profiles are
    looked up only for the steps that run.
    """
    f = family
    sdk = {"clients": DIRECT_THEN_SDK, "client_cells": ((16, 512),), "rounds": 3}

    def table(name: str, **kw: Any) -> list[tuple[str, list[Cell], str, dict[str, Any]]]:
        """A one-server configuration's steps for the table: many streams, then one."""
        return [(name, MANY_STREAMS, "f16", kw), (name, ONE_STREAM, "q4_k_m", {})]

    plan = [
        *table(f"{f}-vibethinker", **sdk),
        *table(f"{f}-vibethinker-topk"),
        *table(f"{f}-vibethinker+stock-sampling"),
        *table(f"{f}-vibethinker-topk+stock-sampling"),
    ]
    extra = [
        (f"{f}-vibethinker", MANY_STREAMS, "q8_0", {}),
        ("default", [(16, 512)], "f16", {}),
        *(
            (f"{f}-vibethinker-mps{s}", MANY_STREAMS, "f16", {})
            for s in ("", "+stock-sampling", "-topk", "-topk+stock-sampling")
        ),
    ]
    if only:
        listed = {p[0] for p in plan + extra}
        plan = [p for p in plan if p[0] in only]
        extra = [p for p in extra if p[0] in only]
        for name in only:
            if name not in listed:  # one server: the table's two steps; several: MPS's cells
                several = resolve(name).profile.instances > 1
                plan += [(name, MANY_STREAMS, "f16", {})] if several else table(name)
    steps = []
    for i, (name, cells, model, kw) in enumerate(plan + extra):
        config = resolve(name)
        # MPS for a group of servers (each alone would take turns on the GPU), none for one
        several = config.profile.instances > 1
        steps.append(server(config, cells, mps=several, model=model, extra=i >= len(plan), **kw))
    return steps


HOLE_CELLS: list[Cell] = [(16, 512), (64, 256)]


def holes(family: str, only: Sequence[str]) -> list[Step]:
    """Patch 0004 against the stock split, when answers end at different times.

    Staggered lengths (loadgen: the streams ask for 4/4, 3/4, 2/4 and 1/4 of a cell's tokens)
    leave idle slots between busy ones as the shorter answers end. Each one-server profile (the
    family's model-card profile unless names are given) runs as it is and with ``+stock-holes``
    (``LLAMA_FILL_SLOT_HOLES=0``: the stock split), in turn, twice, on F16. (``--model`` would
    drop the second turn as a repeat.)
    """
    load = {"lengths": "staggered"}
    names = list(only) or [f"{family}-vibethinker"]
    return [
        server(variant, HOLE_CELLS, model="f16", load=load)
        for _ in range(2)
        for name in names
        for variant in (name, name + STOCK_HOLES)
    ]


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
    "holes": (holes, "runs"),
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
# The model files run_gpu.sh writes: MODELS_DIR/vt-{model}.gguf. bf16 is VibeThinker's own
# weight type (converted from the F16 file, which holds the same random weights).
MODELS = ("q8_0", "q4_k_m", "f16", "bf16")


def warmup_cell(step: Step) -> Cell | None:
    """The warm-up of a llama-server step: its most streams at WARMUP_TOKENS tokens each.

    A fresh server's first load ran ~10% slower than the same cell after another (at 64 x 256,
    F16, one H100), and one earlier cell of 16 streams was enough to make the next 64-stream
    cell warm; the most streams also send the step's largest prompt batch and touch the KV
    cache of every slot its cells use. 64 tokens keep it to ~1 s on a GPU.
    """
    cells = list(step.cells) + list(step.client_cells)
    if step.kind != "llama-server" or not cells:
        return None
    return (max(c for c, *_ in cells), WARMUP_TOKENS)


def build(
    plan: str,
    family: str,
    only: Sequence[str],
    cells: Sequence[Cell] = (),
    model: str | None = None,
    *,
    warmup: bool = True,
    rounds: int | None = None,
) -> list[Step]:
    """The steps of ``plan``; :class:`UnknownConfigError` for a name that is not valid there.

    ``cells`` (when given) replaces the cells of every step that has some; ``model`` (when
    given: one of MODELS) the model file of every llama-server step, and a step that then
    repeats an earlier one (same name, file, cells and clients) is dropped.
    ``warmup`` gives every llama-server step its :func:`warmup_cell`; without it each step's
    first cell is its servers' first load. ``rounds`` (when given) replaces the number of
    interleaved rounds of every step that compares clients (the SDK against direct).
    """
    if rounds is not None and rounds < 1:
        raise ValueError(f"rounds must be 1 or more, not {rounds}")
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
    if rounds is not None:
        steps = [replace(s, rounds=rounds) if s.clients else s for s in steps]
    if model is not None:
        forced = [replace(s, model=model) if s.kind == "llama-server" else s for s in steps]
        steps = [s for i, s in enumerate(forced) if not any(_repeats(s, t) for t in forced[:i])]
    if warmup:
        steps = [replace(s, warmup=warmup_cell(s)) for s in steps]
    return steps


def _repeats(a: Step, b: Step) -> bool:
    """Whether llama-server step ``a`` measures nothing that the earlier ``b`` does not."""

    def what(s: Step) -> tuple[Any, ...]:
        return (s.kind, s.name, s.config, s.model, s.cells, s.mps, s.mps_tag, s.load)

    return a.kind == "llama-server" and not a.clients and what(a) == what(b)


def model_files(steps: Sequence[Step]) -> list[str]:
    """The model files the steps load (``vt-{model}.gguf``), in MODELS' order."""
    used = {s.model for s in steps if s.kind != "transformers"}
    return [f"vt-{m}.gguf" for m in MODELS if m in used]


# ---- estimates ------------------------------------------------------------------------------

# Tokens/s in total on one H100 with patches 0001-0003, by concurrency; the lowest of each cell's
# runs (a fresh server's first load among them). Keys: the model file and whether the profile
# cuts to the top 64 tokens (True) or samples as the model card says (False). One server of 64
# slots, batched sampling: results/h100-s10-*.jsonl.
_ONE: dict[tuple[str, bool], dict[int, float]] = {
    ("f16", False): {1: 298, 16: 2624, 64: 7321},
    ("f16", True): {1: 366, 16: 2769, 64: 7312},
    ("q8_0", False): {1: 351, 16: 2521, 64: 5987},
    ("q8_0", True): {1: 427, 16: 2636, 64: 6256},
    ("q4_k_m", False): {1: 380, 16: 2619, 64: 5957},
    ("q4_k_m", True): {1: 471, 16: 2759, 64: 5999},
}
# BF16 not yet measured: F16's rates, the same size of weights.
_ONE |= {("bf16", cut): _ONE["f16", cut] for cut in (False, True)}
# 4 servers x 16 under MPS, batched sampling, any file: F16 (results/h100-s10-run3-f16-mps.jsonl)
# and Q8_0 (sessions 5, 7, 9), the lower; one and four streams from run 6.
_MPS = {1: 430, 4: 760, 16: 2223, 64: 5527}
# Stock sampling (LLAMA_BATCHED_SAMPLING=0; every sequence sampled in its own graphs), Q8_0
# (sessions 4, 5, 9), by (several servers under MPS, top-k cut). Sampling, not the weights,
# bounds these, so they stand for every file; the file's rate above caps them.
_STOCK: dict[tuple[bool, bool], dict[int, float]] = {
    (False, False): {1: 335, 16: 743, 64: 808},
    (False, True): {1: 394, 16: 1580, 64: 1802},
    (True, False): {1: 335, 16: 1403, 64: 1946},
    (True, True): {1: 394, 16: 2512, 64: 4940},
}
# A fresh GPU machine's setup (run_gpu.sh): the wheels and the probe, the build (228-324 s on
# 16 cores, the model written meanwhile), then quantizing each file the plan needs (Q8_0 always,
# 5-6 s).
BUILD_S = 15.0 + 300.0
QUANTIZE_S = {"q8_0": 7.0, "q4_k_m": 7.0, "f16": 0.0, "bf16": 7.0}


def _rate(table: dict[int, float], concurrency: int) -> float:
    """``table`` at ``concurrency``: log-log between its keys, in proportion below the first,
    flat above the last."""
    keys = sorted(table)
    c = max(concurrency, 1)
    if c <= keys[0]:
        return table[keys[0]] * c / keys[0]
    for lo, hi in itertools.pairwise(keys):
        if c <= hi:
            t = math.log(c / lo) / math.log(hi / lo)
            return float(table[lo] ** (1 - t) * table[hi] ** t)
    return table[keys[-1]]


def prior_tps(
    prof: ServerProfile, concurrency: int, model: str = "q8_0", stock: bool = False
) -> float:
    """A rough tokens/s in total before a cell is measured: the skip logic's first guess.

    ``model`` is the file (MODELS), ``stock`` whether the servers sample the stock way. A build
    without the batched-sampling patch samples the stock way whatever ``stock`` says, and its
    cells take longer than this; runs 1-7 measured such builds.
    """
    if prof.parallel is None:  # llama-server's defaults: 4 slots, the other streams queue
        return min(400.0 * concurrency, 650.0)
    several, cut = prof.instances > 1, prof.sampling.top_k > 0
    tps = _rate(_MPS if several else _ONE[model, cut], concurrency)
    if stock:
        tps = min(tps, _rate(_STOCK[several, cut], concurrency))
    return tps


def cell_seconds(
    prof: ServerProfile | None,
    cell: Cell,
    tps: float | None = None,
    *,
    model: str = "q8_0",
    stock: bool = False,
) -> float:
    """A llama-server cell's seconds at ``tps`` (default: the prior); without a profile, one of
    llama-cpp-python's server (one request at a time: 43 tokens/s, 92 in total at 16 streams)."""
    c, n, rps = unpack(cell)
    if tps is None:
        tps = min(43.0 * c, 90.0) if prof is None else prior_tps(prof, c, model, stock)
    return rps * c * n / max(tps, 1.0) + CELL_OVERHEAD_S


def step_seconds(step: Step) -> float:
    """The step's estimated seconds: server start, warm-up, cells, the clients' rounds."""
    if step.kind == "transformers":  # one batch, 13 tokens/s per sequence, after ~20 s to load
        return 20.0 + sum(n / 13.0 + 5 for _, n, *_ in step.cells)
    prof = step.config.profile if step.config else None
    stock = step.config.stock_sampling if step.config else False
    cells = list(step.cells) + [c for c in step.client_cells for _ in step.clients * step.rounds]
    cells += [step.warmup] if step.warmup else []
    start = SERVER_START_S if step.kind == "llama-server" else 20.0
    return start + sum(cell_seconds(prof, c, model=step.model, stock=stock) for c in cells)


def quantized_files(steps: Sequence[Step]) -> list[str]:
    """The files run_gpu.sh quantizes for the steps (Q8_0 always: setup writes it)."""
    used = {"q8_0"} | {s.model for s in steps if s.kind != "transformers"}
    return [m for m in MODELS if m in used and QUANTIZE_S[m]]


def setup_seconds(steps: Sequence[Step]) -> float:
    """A fresh machine's run_gpu.sh setup for the steps: build, then quantize what they load."""
    return BUILD_S + sum(QUANTIZE_S[m] for m in quantized_files(steps))


def describe(step: Step) -> str:
    """One line: name, MPS, model file, warm-up, cells, the clients' rounds, estimated seconds."""

    def fmt(cells: Sequence[Cell]) -> str:
        return " ".join("x".join(map(str, c)) for c in cells)

    mps = {True: "on", False: "off", None: "-"}[step.mps]
    model = step.model if step.kind != "transformers" else "-"
    warm = f"(warm-up {fmt([step.warmup])}) " if step.warmup else ""
    text = f"{step.name:40} mps {mps:3} {model:6} {warm}{fmt(step.cells) or '-'}"
    if step.load:
        text += " (" + ", ".join(f"{k} {v}" for k, v in step.load.items()) + ")"
    if step.clients:
        order = ", ".join(n for n, _ in step.clients)
        text += f"; then chat at {fmt(step.client_cells)}: {order}"
        text += f" x{step.rounds}" if step.rounds > 1 else ""
    return f"{text}  ~{step_seconds(step):.0f} s"
