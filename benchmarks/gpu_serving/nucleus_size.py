"""How many tokens does a trained model's nucleus hold at temperature 0.6, top_p 0.95?

A top-k cut of K before temperature and top-p changes nothing whenever the nucleus holds at most
K tokens. This samples real answers from SmolLM2-135M-Instruct (a trained model, far smaller and
less sure of itself than VibeThinker-1.5B, so its nuclei are if anything larger) with
llama-cpp-python and records, at every generated token, the size of the 0.95 nucleus of
softmax(logits / 0.6).

    .venv/bin/python benchmarks/gpu_serving/nucleus_size.py \
        > benchmarks/gpu_serving/results/nucleus.json
"""

from __future__ import annotations

import json
import platform
import sys
import time

import numpy as np

PROMPTS = [
    "Solve step by step: what is the sum of the first 50 odd numbers?",
    "Write a Python function that returns the n-th Fibonacci number, and explain it.",
    "A train travels 120 km in 1.5 hours. What is its average speed? Think step by step.",
    "Prove that the square root of 2 is irrational.",
]


def nucleus(logits: np.ndarray, temperature: float = 0.6, top_p: float = 0.95) -> int:
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    p = np.sort(p)[::-1]
    return int(np.searchsorted(np.cumsum(p), top_p) + 1)


def main() -> None:
    from llama_cpp import Llama
    from vibesdk_server.serving import models

    path = models.smollm2()
    llm = Llama(str(path), n_ctx=1024, n_threads=2, logits_all=True, verbose=False, seed=1)
    sizes: list[int] = []
    t0 = time.time()
    for prompt in PROMPTS:
        text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
        tokens = llm.tokenize(text.encode(), special=True)
        llm.reset()
        llm.eval(tokens)
        rng = np.random.default_rng(0)
        for _ in range(160):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            sizes.append(nucleus(logits))
            z = logits.astype(np.float64) / 0.6
            z -= z.max()
            p = np.exp(z)
            p /= p.sum()
            order = np.argsort(p)[::-1]
            keep = order[: nucleus(logits)]
            q = p[keep] / p[keep].sum()
            tok = int(rng.choice(keep, p=q))
            if tok == llm.token_eos():
                break
            llm.eval([tok])
    arr = np.array(sizes)
    out = {
        "model": path.name,
        "temperature": 0.6,
        "top_p": 0.95,
        "tokens": len(sizes),
        "nucleus_p50": float(np.percentile(arr, 50)),
        "nucleus_p90": float(np.percentile(arr, 90)),
        "nucleus_p99": float(np.percentile(arr, 99)),
        "nucleus_max": int(arr.max()),
        "share_le_40": float((arr <= 40).mean()),
        "share_le_64": float((arr <= 64).mean()),
        "share_le_100": float((arr <= 100).mean()),
        "seconds": round(time.time() - t0, 1),
        "machine": f"{platform.machine()} {platform.processor()}",
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
