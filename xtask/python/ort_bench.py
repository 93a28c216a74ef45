"""ONNX Runtime peer of `akidb-embed bench-engine`: embeds one fixed batch over and over and
prints one JSON line in the same format (sentences/s, p50/p95 ms per call, iterations).

Each timed call tokenizes and runs the session, as the Candle side's `embed` does.

    python xtask/python/ort_bench.py --model-dir DIR --texts TEXTS.json --seconds 3 --threads 2
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

EMBEDDING_OUTPUT = "461"  # the packaged export's mean-pooled sentence embedding
DEFAULT_MAX_SEQ_LENGTH = 128


def max_seq_length(model_dir: Path) -> int:
    """The model's max_seq_length from sentence_bert_config.json (128 when absent)."""
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", DEFAULT_MAX_SEQ_LENGTH))
    return DEFAULT_MAX_SEQ_LENGTH


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The model's tokenizer, padding to the longest text of a batch and truncating at the
    model's limit (the packaged tokenizer.json pads every input to a fixed 128)."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_seq_length(model_dir))
    return tokenizer


def load_session(model_dir: Path, threads: int) -> ort.InferenceSession:
    """A CPU session on the model's ONNX export with `threads` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(model_dir / "onnx" / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )


def embed(tokenizer: Tokenizer, session: ort.InferenceSession, texts: list[str]) -> tuple[np.ndarray, int]:
    """One call: tokenize as a padded batch and run; returns the vectors and the real tokens."""
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    wanted = {i.name for i in session.get_inputs()}
    if "token_type_ids" in wanted:
        feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
    (vectors,) = session.run([EMBEDDING_OUTPUT], {k: v for k, v in feeds.items() if k in wanted})
    return vectors, int(mask.sum())


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
    args = parser.parse_args()

    texts = json.loads(args.texts.read_text())
    tokenizer = load_tokenizer(args.model_dir)
    session = load_session(args.model_dir, args.threads)
    tokens = 0
    for _ in range(max(args.warmup, 1)):
        _, tokens = embed(tokenizer, session, texts)
    calls: list[float] = []
    started = time.perf_counter()
    while len(calls) < 3 or time.perf_counter() - started < args.seconds:
        call = time.perf_counter()
        embed(tokenizer, session, texts)
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
