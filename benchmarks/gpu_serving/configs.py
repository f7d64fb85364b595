"""What a configuration name means: which llama-server profile, started with which environment.

A name is a profile from ``vibesdk_server.serving.PROFILES`` (looked up when the benchmark runs,
so profiles added or renamed there need no change here) or one of the variant names of runs 1-7
(``tuned``, ``ram0-4x16``, ... below), optionally followed by ``+stock-sampling``: the same
servers started with ``LLAMA_BATCHED_SAMPLING=0``, which makes a llama-server built with the
batched-sampling patch sample each sequence in its own graph, as stock llama.cpp does; and/or by
``+stock-handoff``: started with ``LLAMA_TASK_WAKEUP=0``, which makes a llama-server built with
the hand-off patch (0003) wake every HTTP reader for each result, as stock llama.cpp does; and/or
by ``+op-always``: started with ``LLAMA_BATCHED_SAMPLING_MIN_ROWS=1``, which makes the batched op
sample a decode step of one sequence too (by default such a step keeps the stock graphs); and/or
by ``+stock-holes``: started with ``LLAMA_FILL_SLOT_HOLES=0``, which makes a llama-server built
with patch 0004 decode the busy slots on each side of an idle one as separate batches, as stock
llama.cpp does. On a build without the patch a variable changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from vibesdk_server.serving import PROFILES, ServerProfile

STOCK_SAMPLING = "+stock-sampling"
STOCK_SAMPLING_ENV = {"LLAMA_BATCHED_SAMPLING": "0"}
STOCK_HANDOFF = "+stock-handoff"
OP_ALWAYS = "+op-always"
STOCK_HOLES = "+stock-holes"
# A name's suffixes (in any order, each at most once) and the environment each gives its servers.
SUFFIX_ENV: dict[str, dict[str, str]] = {
    STOCK_SAMPLING: STOCK_SAMPLING_ENV,
    STOCK_HANDOFF: {"LLAMA_TASK_WAKEUP": "0"},
    OP_ALWAYS: {"LLAMA_BATCHED_SAMPLING_MIN_ROWS": "1"},
    STOCK_HOLES: {"LLAMA_FILL_SLOT_HOLES": "0"},
}

# Environment for a variant's servers (ggml's switches are environment variables).
VARIANT_ENV: dict[str, dict[str, str]] = {"ram0-graph-opt": {"GGML_CUDA_GRAPH_OPT": "1"}}


class UnknownConfigError(ValueError):
    """A name that is neither a profile nor a variant; the message lists the valid ones."""


@dataclass(frozen=True)
class Config:
    """A named llama-server configuration: a profile and the environment of its servers."""

    name: str
    profile: ServerProfile
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def stock_sampling(self) -> bool:
        return self.env.get("LLAMA_BATCHED_SAMPLING") == "0"


def profile(name: str) -> ServerProfile:
    """``PROFILES[name]``, or :class:`UnknownConfigError` listing the profiles there are."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownConfigError(
            f"no profile {name!r}; PROFILES has {', '.join(sorted(PROFILES))}"
        ) from None


def first_profile(*names: str, top_k: int | None = None) -> ServerProfile:
    """The first of ``names`` that PROFILES has (with ``top_k``, the first whose top-k is that)."""
    for name in names:
        p = PROFILES.get(name)
        if p is not None and (top_k is None or p.sampling.top_k == top_k):
            return p
    raise UnknownConfigError(
        f"none of {', '.join(names)} is a profile"
        + (f" with top_k {top_k}" if top_k is not None else "")
        + f"; PROFILES has {', '.join(sorted(PROFILES))}"
    )


def legacy_tuned() -> ServerProfile:
    """The profile runs 1-7 call ``tuned``: one H100 server of 64 slots with a top-k cut of 64.

    Its name was ``h100-vibethinker`` then; once that name means the model card's sampling
    (no top-k cut), ``h100-vibethinker-topk`` is the same servers.
    """
    return first_profile("h100-vibethinker-topk", "h100-vibethinker", top_k=64)


def legacy_tuned_mps() -> ServerProfile:
    """``tuned-mps`` of run 6: 4 servers of 16 slots under MPS, top-k 64."""
    return first_profile("h100-vibethinker-mps-topk", "h100-vibethinker-mps", top_k=64)


def variants() -> dict[str, ServerProfile]:
    """Flag variants of runs 1-7, each a profile derived from the tuned one."""
    t = legacy_tuned()
    default = profile("default")
    return {
        "default": default,
        "tuned": t,
        "tuned-cpu-sampling": replace(t, name="tuned-cpu-sampling", backend_sampling=False),
        "tuned-no-kvu": replace(
            t, name="tuned-no-kvu", kv_unified=False, ctx_per_slot=4096, kv_pool_tokens=None
        ),
        "tuned-topk0": replace(t, name="tuned-topk0", sampling=replace(t.sampling, top_k=0)),
        "default+bs": replace(default, name="default+bs", backend_sampling=True),
        "tuned-topk40-default-order": replace(
            t,
            name="tuned-topk40-default-order",
            sampling=replace(t.sampling, top_k=40, samplers=None),
        ),
        "tuned-np32x2": replace(
            t, name="tuned-np32x2", instances=2, parallel=32, kv_pool_tokens=131072
        ),
        "tuned-np128": replace(t, name="tuned-np128", parallel=128, kv_pool_tokens=262144),
        # second round, around the no-kvu winner of the first
        "tuned-kvu": replace(
            t, name="tuned-kvu", kv_unified=True, ctx_per_slot=40960, kv_pool_tokens=262144
        ),
        "tuned-greedy": replace(
            t, name="tuned-greedy", sampling=replace(t.sampling, temperature=0.0)
        ),
        "tuned-2x32": replace(t, name="tuned-2x32", instances=2, parallel=32),
        "tuned-4x16": replace(t, name="tuned-4x16", instances=4, parallel=16),
        "tuned-40k-q8kv": replace(
            t, name="tuned-40k-q8kv", ctx_per_slot=40960, kv_cache_type="q8_0"
        ),
        # session 2: the host-RAM prompt cache off, then several servers on the GPU (with and
        # without the MPS daemon, which lets their kernels run at the same time)
        "tuned-cache8g": replace(t, name="tuned-cache8g", cache_ram_mib=8192),
        "tuned-ram0": replace(t, name="tuned-ram0", cache_ram_mib=0),
        **{
            f"ram0-{n}x{64 // n}": replace(
                t, name=f"ram0-{n}x{64 // n}", cache_ram_mib=0, instances=n, parallel=64 // n
            )
            for n in (2, 4, 8, 16)
        },
        # the same servers on the Q4_K_M model (the plans pass the model file)
        "ram0-q4": replace(t, name="ram0-q4", cache_ram_mib=0),
        "ram0-q4-8x8": replace(t, name="ram0-q4-8x8", cache_ram_mib=0, instances=8, parallel=8),
        # with VARIANT_ENV's GGML_CUDA_GRAPH_OPT=1
        "ram0-graph-opt": replace(t, name="ram0-graph-opt", cache_ram_mib=0),
    }


def _variants_or_none() -> dict[str, ServerProfile]:
    try:
        return variants()
    except UnknownConfigError:
        return {}


def known() -> str:
    """The valid names, in one line."""
    names = sorted(_variants_or_none().keys() - PROFILES.keys())
    return (
        f"profiles: {', '.join(sorted(PROFILES))}; variants of runs 1-7: "
        f"{', '.join(names) or '(none: no h100 profile with top-k 64)'}; "
        f"each may end in {' and/or '.join(SUFFIX_ENV)}"
    )


def split_suffixes(name: str) -> tuple[str, dict[str, str]]:
    """``name`` without its trailing suffixes of SUFFIX_ENV, and the environment they give."""
    env: dict[str, str] = {}
    seen: set[str] = set()
    while suffix := next((s for s in SUFFIX_ENV if name.endswith(s) and s not in seen), None):
        seen.add(suffix)
        env.update(SUFFIX_ENV[suffix])
        name = name.removesuffix(suffix)
    return name, env


def resolve(name: str) -> Config:
    """The configuration ``name`` means; :class:`UnknownConfigError` lists the valid names."""
    base, suffix_env = split_suffixes(name)
    env: dict[str, str] = {}
    if name in PROFILES:
        base = name
        prof = PROFILES[name]
    elif base in PROFILES:
        prof = PROFILES[base]
    else:
        found = _variants_or_none()
        if name in found:  # variant names may hold a '+' themselves ("default+bs")
            base = name
        if base not in found:
            raise UnknownConfigError(f"unknown config {name!r}; {known()}")
        prof = found[base]
        env.update(VARIANT_ENV.get(base, {}))
    if base != name:
        env.update(suffix_env)
    return Config(name, prof, env)
