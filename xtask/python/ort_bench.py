"""ONNX Runtime peer of `akidb-embed bench-engine`: embeds one fixed batch over and over and
prints one JSON line in the same format (sentences/s, p50/p95 ms per call, iterations).

Each timed call tokenizes, runs the session and L2-normalises when the model does, as the Candle
side's `embed` does. The sentence embedding is the session's output `461` (the name in the
packaged export and in those `safetensors_to_onnx.py` makes), or else its only float output of
rank 2.

    python xtask/python/ort_bench.py --model-dir DIR --texts TEXTS.json --seconds 3 --threads 2

`--onnx FILE` runs another export of the same model (the int8 one, `onnx/model-int8.onnx`)
instead of `onnx/model.onnx`.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from model_folder import embedding_output, feeds, load_tokenizer, normalizes


def load_session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session on an ONNX export with `threads` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def embed(
    tokenizer: Tokenizer,
    session: ort.InferenceSession,
    output: str,
    normalize: bool,
    texts: list[str],
) -> tuple[np.ndarray, int]:
    """One call: tokenize as a padded batch, run and normalise if asked; returns the vectors and
    the real tokens."""
    encodings = tokenizer.encode_batch(texts)
    (vectors,) = session.run([output], feeds(session, encodings))
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors, sum(sum(e.attention_mask) for e in encodings)


def quantile_ms(sorted_seconds: list[float], q: float) -> float:
    """Nearest-rank quantile in milliseconds (the Candle side's definition)."""
    if not sorted_seconds:
        return 0.0
    rank = min(max(math.ceil(q * len(sorted_seconds)), 1), len(sorted_seconds))
    return sorted_seconds[rank - 1] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--texts", type=Path, required=True, help="JSON array of texts (one batch)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ORT's default)")
    parser.add_argument("--onnx", type=Path, help="the export to run (default: onnx/model.onnx)")
    args = parser.parse_args()

    texts = json.loads(args.texts.read_text())
    tokenizer = load_tokenizer(args.model_dir)
    session = load_session(args.onnx or args.model_dir / "onnx" / "model.onnx", args.threads)
    output = embedding_output(session)
    normalize = normalizes(args.model_dir)
    tokens = 0
    for _ in range(max(args.warmup, 1)):
        _, tokens = embed(tokenizer, session, output, normalize, texts)
    calls: list[float] = []
    started = time.perf_counter()
    while len(calls) < 3 or time.perf_counter() - started < args.seconds:
        call = time.perf_counter()
        embed(tokenizer, session, output, normalize, texts)
        calls.append(time.perf_counter() - call)
    seconds = time.perf_counter() - started
    calls.sort()
    print(
        json.dumps(
            {
                "engine": "onnxruntime",
                "model": args.model_dir.name,
                "batch": len(texts),
                "mean_tokens": tokens / max(len(texts), 1),
                "iterations": len(calls),
                "seconds": seconds,
                "sentences_per_s": len(texts) * len(calls) / seconds,
                "p50_ms": quantile_ms(calls, 0.50),
                "p95_ms": quantile_ms(calls, 0.95),
                "threads": args.threads,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
