"""Write a GGUF with VibeThinker-1.5B's exact shape, random weights and the real Qwen2 vocabulary.

VibeThinker-1.5B is a Qwen2 model: hidden 1536, 28 layers, 12 attention heads, 2 KV heads,
FFN 8960, vocabulary 151,936, tied input/output embeddings, q/k/v biases. Serving speed depends on
the shape and the quantization, not on the weight values, so a model of that shape with random
weights benchmarks the server honestly without downloading the real weights. The tokenizer
(tokens, merges, token types, special ids, chat template) is copied from llama.cpp's
``models/ggml-vocab-qwen2.gguf``, which ships in llama-cpp-python's source distribution.

    python make_model.py --vocab ggml-vocab-qwen2.gguf --out vt-f16.gguf
    llama-quantize vt-f16.gguf vt-q8_0.gguf Q8_0

``--layers``/``--hidden``/... make a smaller model of the same family for tests on a CPU.

One caveat for sampling benchmarks: random weights give a flat next-token distribution (logit
standard deviation about 1), where a trained model's is peaked. Samplers whose cost grows with the
number of candidates they keep (top-p without a top-k cut) are slower here than with the real model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

ARCH = "qwen2"


def copy_tokenizer(reader: GGUFReader, writer: GGUFWriter) -> int:
    """Copy every ``tokenizer.*`` field; return the vocabulary size."""
    n_vocab = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        main_type = field.types[0]
        if main_type == GGUFValueType.ARRAY:
            sub_type = field.types[1]
            values = field.contents()
            writer.add_key_value(key, values, main_type, sub_type=sub_type)
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(values)
        else:
            writer.add_key_value(key, field.contents(), main_type)
    return n_vocab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", required=True, type=Path, help="ggml-vocab-qwen2.gguf")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=8960)
    ap.add_argument(
        "--context", type=int, default=131072, help="trained context length written to the GGUF"
    )
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    reader = GGUFReader(args.vocab)
    writer = GGUFWriter(args.out, ARCH)
    writer.add_name("vibethinker-1.5b-shape-random")
    n_vocab = copy_tokenizer(reader, writer)
    writer.add_context_length(args.context)
    writer.add_embedding_length(args.hidden)
    writer.add_block_count(args.layers)
    writer.add_feed_forward_length(args.ffn)
    writer.add_head_count(args.heads)
    writer.add_head_count_kv(args.kv_heads)
    writer.add_rope_freq_base(args.rope_theta)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(1)  # mostly F16

    rng = np.random.default_rng(args.seed)
    head_dim = args.hidden // args.heads
    kv_dim = head_dim * args.kv_heads
    n_params = 0

    def mat(name: str, rows: int, cols: int) -> None:
        # numpy shape (rows, cols) is GGUF ne = [cols, rows]: rows outputs, each over cols inputs.
        nonlocal n_params
        data = rng.standard_normal((rows, cols), dtype=np.float32)
        data *= 0.02
        writer.add_tensor(name, data.astype(np.float16), raw_dtype=GGMLQuantizationType.F16)
        n_params += rows * cols

    def vec(name: str, n: int, *, ones: bool) -> None:
        nonlocal n_params
        if ones:
            data = (1.0 + 0.01 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)
        else:
            data = (0.02 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)
        writer.add_tensor(name, data, raw_dtype=GGMLQuantizationType.F32)
        n_params += n

    # Tied embeddings: no output.weight, llama.cpp reuses token_embd for the output projection.
    mat("token_embd.weight", n_vocab, args.hidden)
    vec("output_norm.weight", args.hidden, ones=True)
    for i in range(args.layers):
        p = f"blk.{i}."
        vec(p + "attn_norm.weight", args.hidden, ones=True)
        mat(p + "attn_q.weight", args.hidden, args.hidden)
        vec(p + "attn_q.bias", args.hidden, ones=False)
        mat(p + "attn_k.weight", kv_dim, args.hidden)
        vec(p + "attn_k.bias", kv_dim, ones=False)
        mat(p + "attn_v.weight", kv_dim, args.hidden)
        vec(p + "attn_v.bias", kv_dim, ones=False)
        mat(p + "attn_output.weight", args.hidden, args.hidden)
        vec(p + "ffn_norm.weight", args.hidden, ones=True)
        mat(p + "ffn_gate.weight", args.ffn, args.hidden)
        mat(p + "ffn_up.weight", args.ffn, args.hidden)
        mat(p + "ffn_down.weight", args.hidden, args.ffn)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    size = args.out.stat().st_size
    print(
        f"wrote {args.out}: {n_params / 1e9:.3f} B parameters, vocab {n_vocab}, "
        f"{size / 2**30:.2f} GiB in {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
