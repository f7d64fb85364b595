"""Launch profiles: named, measured sets of ``llama-server`` flags.

A profile is data. :meth:`ServerProfile.args` turns it into one ``llama-server`` command line;
the launcher starts ``instances`` of them on consecutive free ports. Why each value of the GPU
profile is what it is: docs/deployment/gpu-serving.md and benchmarks/gpu_serving/README.md, which
hold the measurements.

The VibeThinker profiles come in two sampling modes: the model card's (no top-k cut), and the
``-topk`` twin of each that cuts to the 64 likeliest tokens first. :func:`profile_for_gpu` picks
one by the GPU's name, for ``--profile auto``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from vibesdk import ConfigError

__all__ = [
    "PROFILES",
    "VIBETHINKER_SAMPLING",
    "VIBETHINKER_TOPK_SAMPLING",
    "SamplingDefaults",
    "ServerProfile",
    "get_profile",
    "profile_for_gpu",
]


@dataclass(frozen=True)
class SamplingDefaults:
    """The server-side sampling defaults; a request's own parameters still win.

    ``samplers`` is llama.cpp's chain order. llama.cpp applies temperature *last* by default;
    ``top_k;temperature;top_p`` applies it before top-p, as Hugging Face and vLLM do, so
    "temperature 0.6, top_p 0.95" means what the model card means.
    """

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    samplers: str | None = None

    def args(self) -> list[str]:
        out: list[str] = []
        if self.temperature is not None:
            out += ["--temp", f"{self.temperature:g}"]
        if self.top_p is not None:
            out += ["--top-p", f"{self.top_p:g}"]
        if self.top_k is not None:
            out += ["--top-k", str(self.top_k)]
        if self.min_p is not None:
            out += ["--min-p", f"{self.min_p:g}"]
        if self.samplers is not None:
            out += ["--samplers", self.samplers]
        return out

    def request_params(self) -> dict[str, float | int]:
        """The same values as request parameters (for a flag document variant's ``params``).

        ``temperature``, ``top_p`` and ``top_k`` when set; ``top_k`` 0 ("no cut") is written out
        like any other value. A request's own ``top_k`` wins over the server's, and a variant
        whose ``params`` left it out would sample with whatever default the server behind it has
        (llama-server's own is 40), so the variant states the cut, or its absence, itself.
        """
        out: dict[str, float | int] = {}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.top_p is not None:
            out["top_p"] = self.top_p
        if self.top_k is not None:
            out["top_k"] = self.top_k
        return out


@dataclass(frozen=True)
class ServerProfile:
    """How to run ``llama-server`` for one kind of machine and model.

    ``None`` leaves llama-server's own default. ``ctx_per_slot`` is the longest conversation one
    slot holds (prompt + answer); with ``kv_unified`` the slots share one KV pool of
    ``kv_pool_tokens`` cells (default ``parallel * ctx_per_slot``), so a few long answers fit
    without reserving the worst case for every slot. ``cache_ram_mib`` sizes llama-server's
    host-RAM prompt cache (0 turns it off). ``needs_mps``: the ``instances`` share one GPU and are
    only faster than one server when the CUDA MPS control daemon lets their kernels run at the
    same time; the launcher warns when it is not running. ``env``: environment variables
    llama-server runs with unless the launching environment sets them (``NAME=value`` pairs;
    see :meth:`environment`).
    """

    name: str
    description: str
    instances: int = 1
    parallel: int | None = None
    ctx_per_slot: int | None = None
    kv_unified: bool | None = None
    kv_pool_tokens: int | None = None
    kv_cache_type: str | None = None
    gpu_layers: str | None = None
    flash_attn: str | None = None
    backend_sampling: bool = False
    threads: int | None = None
    threads_http: int | None = None
    batch: int | None = None
    ubatch: int | None = None
    cache_reuse: int | None = None
    cache_ram_mib: int | None = None
    needs_mps: bool = False
    warmup: bool = True
    metrics: bool = True
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    extra_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def environment(
        self, base: Mapping[str, str], env: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """llama-server's environment: ``base`` (the launcher's), over the profile's ``env``,
        so a variable set where it is launched wins over the profile's default; ``env`` (the
        caller's) over both."""
        return {**dict(self.env), **base, **(env or {})}

    def ctx_size(self) -> int | None:
        """The ``-c`` value: the whole KV cache of one server."""
        if self.kv_unified and self.kv_pool_tokens is not None:
            return self.kv_pool_tokens
        if self.ctx_per_slot is None:
            return None
        return self.ctx_per_slot * (self.parallel or 1)

    def args(  # noqa: PLR0912 -- one branch per optional flag reads best as a flat list
        self, model: Path, *, host: str, port: int, alias: str | None = None
    ) -> list[str]:
        """The command line after the binary, for one instance."""
        out = ["--model", str(model), "--host", host, "--port", str(port)]
        if alias:
            out += ["--alias", alias]
        if self.metrics:
            out.append("--metrics")
        if self.gpu_layers is not None:
            out += ["--n-gpu-layers", self.gpu_layers]
        if self.parallel is not None:
            out += ["--parallel", str(self.parallel)]
        ctx = self.ctx_size()
        if ctx is not None:
            out += ["--ctx-size", str(ctx)]
        if self.kv_unified is True:
            out.append("--kv-unified")
            if self.ctx_per_slot is not None and self.kv_pool_tokens is not None:
                out += ["--kv-unified-per-slot", str(self.ctx_per_slot)]
        elif self.kv_unified is False:
            out.append("--no-kv-unified")
        if self.kv_cache_type is not None:
            out += ["--cache-type-k", self.kv_cache_type, "--cache-type-v", self.kv_cache_type]
        if self.flash_attn is not None:
            out += ["--flash-attn", self.flash_attn]
        if self.backend_sampling:
            out.append("--backend-sampling")
        if self.threads is not None:
            out += ["--threads", str(self.threads)]
        if self.threads_http is not None:
            out += ["--threads-http", str(self.threads_http)]
        if self.batch is not None:
            out += ["--batch-size", str(self.batch)]
        if self.ubatch is not None:
            out += ["--ubatch-size", str(self.ubatch)]
        if self.cache_reuse is not None:
            out += ["--cache-reuse", str(self.cache_reuse)]
        if self.cache_ram_mib is not None:
            out += ["--cache-ram", str(self.cache_ram_mib)]
        if not self.warmup:
            out.append("--no-warmup")
        out += self.sampling.args()
        out += list(self.extra_args)
        return out

    def with_overrides(self, **changes: object) -> ServerProfile:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)  # type: ignore[arg-type]


# VibeThinker's model card: temperature 0.6, top_p 0.95, no top-k cut (top_k 0 turns the cut off).
# The chain applies temperature before top-p, as the card means.
VIBETHINKER_SAMPLING = SamplingDefaults(
    temperature=0.6, top_p=0.95, top_k=0, min_p=0.0, samplers="top_k;temperature;top_p"
)
# The same with the 64 likeliest tokens kept first. It gives the card's distribution whenever the
# 0.95 nucleus at temperature 0.6 holds at most 64 tokens, and it was the only fast option on stock
# llama.cpp, which sorts the whole 151,936-token vocabulary per slot and step for top-p without it.
VIBETHINKER_TOPK_SAMPLING = replace(VIBETHINKER_SAMPLING, top_k=64)

_MODEL_CARD = "model-card sampling (temperature 0.6, top_p 0.95, no top-k cut)"
_TOPK = (
    "top-k 64 before temperature 0.6 and top_p 0.95 (the model card's distribution whenever the "
    "0.95 nucleus holds at most 64 tokens)"
)


# The batched op samples a step of one sequence too (patch 0002; by default such a step keeps
# llama.cpp's own graphs): the model-card profiles set it, their -topk twins leave it out.
_OP_FOR_ONE_ROW = ("LLAMA_BATCHED_SAMPLING_MIN_ROWS", "1")


def _topk(profile: ServerProfile) -> ServerProfile:
    """``profile``'s ``-topk`` twin: the same launch with :data:`VIBETHINKER_TOPK_SAMPLING`.

    One stream with the top-k cut is sampled fastest by llama.cpp's own graphs (Q4_K_M on an
    H100: 491-507 tokens/s per stream against 481-482 with the op), so the twin leaves the
    one-row steps to them (no ``LLAMA_BATCHED_SAMPLING_MIN_ROWS``).
    """
    return replace(
        profile,
        name=profile.name + "-topk",
        description=profile.description.replace(_MODEL_CARD, _TOPK),
        sampling=VIBETHINKER_TOPK_SAMPLING,
        env=tuple(e for e in profile.env if e != _OP_FOR_ONE_ROW),
    )


def _mps(profile: ServerProfile, description: str) -> ServerProfile:
    """``profile`` as 4 servers of 16 slots each, for a GPU shared through the MPS daemon."""
    return replace(
        profile,
        name=profile.name + "-mps",
        description=description,
        instances=4,
        parallel=16,
        needs_mps=True,
        env=(),  # teams of blocks per row are measured on one server only
    )


# Every value measured on an H100 (benchmarks/gpu_serving), with top-k 64. The host-RAM prompt
# cache is off: with it llama-server copies every idle slot's KV cache to RAM whenever a request
# arrives, which stalls decoding (time to first token at 64 streams 0.76 s with it, 0.30 s without).
H100_VIBETHINKER = ServerProfile(
    name="h100-vibethinker",
    description="VibeThinker-1.5B on one H100: 64 slots with their own KV cache, "
    f"sampling on the GPU, flash attention; {_MODEL_CARD}",
    parallel=64,
    ctx_per_slot=16384,
    kv_unified=False,
    gpu_layers="all",
    flash_attn="on",
    backend_sampling=True,
    threads=4,
    threads_http=64,
    cache_ram_mib=0,
    sampling=VIBETHINKER_SAMPLING,
    # Our build's sampling op (patch 0002) splits each row over a cluster of up to 8 blocks
    # when all rows' clusters fit on the GPU at once: 16 rows 0.24 ms a step instead of 0.98,
    # 16 x 512 streams 3,153-3,168 tokens/s and P95 2.59-2.60 s instead of 2,683 and 3.05 s.
    # With teams the op also samples one stream's step faster than llama.cpp's own graphs do
    # with the model card's top-p over the whole vocabulary: Q4_K_M, one stream, 477-478
    # tokens/s instead of 391-397 (MIN_ROWS 1: the op samples every step, one row too).
    env=(("GGML_CUDA_SAMPLE_ROWS_TEAM", "auto"), _OP_FOR_ONE_ROW),
)
H100_VIBETHINKER_MPS = _mps(
    H100_VIBETHINKER,
    "VibeThinker-1.5B on one H100 with the CUDA MPS daemon running: 4 servers of 16 slots "
    "whose kernels overlap (64 streams: 1.7x one server's tokens/s on a build without the "
    "hand-off patch 0003; 0.93x with it on Q8_0, 0.81x on F16 with all three patches); "
    + _MODEL_CARD,
)

# The H200 (141 GB) starts from the H100's values; none of them is measured on an H200 yet.
H200_VIBETHINKER = replace(
    H100_VIBETHINKER,
    name="h200-vibethinker",
    description="VibeThinker-1.5B on one H200 (141 GB), with the H100 profile's settings "
    f"until measured there: 64 slots with their own KV cache, sampling on the GPU; {_MODEL_CARD}",
)
H200_VIBETHINKER_MPS = _mps(
    H200_VIBETHINKER,
    "VibeThinker-1.5B on one H200 (141 GB) with the CUDA MPS daemon running: 4 servers of "
    f"16 slots, the H100 MPS profile's settings until measured there; {_MODEL_CARD}",
)

PROFILES: dict[str, ServerProfile] = {
    p.name: p
    for p in (
        ServerProfile(
            name="default",
            description="llama-server's own defaults (only --metrics added); the baseline",
        ),
        ServerProfile(
            name="cpu-small",
            description="CI and laptops: a small model on a few CPU threads",
            parallel=2,
            ctx_per_slot=2048,
            # One thread: llama.cpp's threads spin-wait, and on a 2-core machine shared with
            # anything else two of them collapse decoding (4 SmolLM2 streams: 52 tokens/s with
            # -t 1, 2.3 with -t 2, measured while the demo ran). Run more instances instead.
            threads=1,
            threads_http=4,
            gpu_layers="0",
            sampling=SamplingDefaults(temperature=0.6, top_p=0.95, top_k=40, min_p=0.0),
        ),
        *(
            variant
            for profile in (
                H100_VIBETHINKER,
                H100_VIBETHINKER_MPS,
                H200_VIBETHINKER,
                H200_VIBETHINKER_MPS,
            )
            for variant in (profile, _topk(profile))
        ),
    )
}


def get_profile(name: str) -> ServerProfile:
    """The profile called ``name``; ``KeyError`` names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


# A GPU model as a word of nvidia-smi's name: "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe",
# "NVIDIA H200 NVL". A whole word, so a GH200 (Grace Hopper, other memory sizes) is not an H200.
_GPU_PROFILES = (("H200", "h200-vibethinker"), ("H100", "h100-vibethinker"))


def profile_for_gpu(gpu_name: str, *, topk: bool = False) -> ServerProfile:
    """The VibeThinker profile for a GPU called ``gpu_name`` (as ``nvidia-smi`` prints it).

    An H200 gets ``h200-vibethinker``, an H100 ``h100-vibethinker`` (one server; the ``-mps``
    profiles need a daemon, so they are never picked for you); ``topk`` picks the ``-topk`` twin.
    Any other GPU raises :class:`vibesdk.ConfigError` naming it and the known profiles.
    """
    for model, name in _GPU_PROFILES:
        if re.search(rf"\b{model}\b", gpu_name, re.IGNORECASE):
            return PROFILES[name + "-topk" if topk else name]
    raise ConfigError(
        f"no launch profile for GPU {gpu_name!r} (auto knows H100 and H200); "
        f"name one of: {', '.join(sorted(PROFILES))}"
    )
