"""Run llama.cpp's ``llama-server`` with measured launch profiles.

    from vibesdk_server.serving import serve

    with serve("smollm2", "cpu-small") as group:
        print(group.urls)              # ['http://127.0.0.1:PORT/v1'] -> a variant's backend.urls

``vibe-serve --profile h100-vibethinker --model vibethinker --write-urls canary.json`` does the
same from a shell and keeps the servers running until interrupted; ``--profile auto`` picks the
VibeThinker profile for this machine's GPU. The binary comes from
server/llama/build.sh; models from :mod:`vibesdk_server.serving.models`.
"""

from __future__ import annotations

from . import models
from ._gpu import gpu_name, mps_running
from ._process import (
    LlamaServer,
    ServerGroup,
    ServerStartError,
    find_llama_server,
    free_port,
    serve,
)
from ._profiles import (
    PROFILES,
    VIBETHINKER_SAMPLING,
    VIBETHINKER_TOPK_SAMPLING,
    SamplingDefaults,
    ServerProfile,
    get_profile,
    profile_for_gpu,
)
from ._settings import ServingSettings, load_serving_settings

__all__ = [
    "PROFILES",
    "VIBETHINKER_SAMPLING",
    "VIBETHINKER_TOPK_SAMPLING",
    "LlamaServer",
    "SamplingDefaults",
    "ServerGroup",
    "ServerProfile",
    "ServerStartError",
    "ServingSettings",
    "find_llama_server",
    "free_port",
    "get_profile",
    "gpu_name",
    "load_serving_settings",
    "models",
    "mps_running",
    "profile_for_gpu",
    "serve",
]
