"""What the Python tools read from a sentence-transformers model folder: its max_seq_length, whether
it normalises, and its tokenizer set up as the Candle side tokenizes (pad to the longest text of
a batch, truncate at the model's limit); and how an ONNX export of it is run and held against the
project's reference vectors."""

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

DEFAULT_MAX_SEQ_LENGTH = 128
EMBEDDING_OUTPUT = "461"  # the exports' mean-pooled sentence embedding


def max_seq_length(model_dir: Path) -> int:
    """The model's max_seq_length from sentence_bert_config.json (128 when absent)."""
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", DEFAULT_MAX_SEQ_LENGTH))
    return DEFAULT_MAX_SEQ_LENGTH


def normalizes(model_dir: Path) -> bool:
    """Whether the model's modules.json ends its pipeline in a Normalize module."""
    modules = model_dir / "modules.json"
    if not modules.is_file():
        return False
    return any(m.get("type", "").endswith(".Normalize") for m in json.loads(modules.read_text()))


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The model's tokenizer, padding to the longest text of a batch and truncating at the
    model's limit (the packaged tokenizer.json pads and truncates every input at a fixed 128)."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_seq_length(model_dir))
    return tokenizer


def embedding_output(session) -> str:
    """The name of an ONNX Runtime session's mean-pooled sentence embedding: `461` (the name in
    the packaged export and in those `safetensors_to_onnx.py` makes), or else its only float
    output of rank 2."""
    outputs = session.get_outputs()
    if any(o.name == EMBEDDING_OUTPUT for o in outputs):
        return EMBEDDING_OUTPUT
    pooled = [o.name for o in outputs if o.type == "tensor(float)" and len(o.shape) == 2]
    if len(pooled) != 1:
        names = ", ".join(f"{o.name} {o.type} {o.shape}" for o in outputs)
        raise SystemExit(f"no single sentence-embedding output among: {names}")
    return pooled[0]


def feeds(session, encodings) -> dict[str, np.ndarray]:
    """The inputs `session` takes, from a padded batch of encodings (only those it takes are
    built: the benchmarks time this)."""
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    return {
        i.name: np.array([getattr(e, fields[i.name]) for e in encodings], dtype=np.int64)
        for i in session.get_inputs()
        if i.name in fields
    }


def reference_cosines(
    model_dir: Path, onnx_path: Path, golden: Path
) -> list[tuple[dict, int, float]]:
    """Embeds every text of `golden` (reference JSON: {items: [{text, tokens, embedding}]}) with
    ONNX Runtime on `onnx_path` (one thread, so the figures repeat), tokenized and normalised as
    the model folder says; returns each item with its token count and the cosine of its vector
    to the reference one."""
    import onnxruntime as ort

    items = json.loads(golden.read_text())["items"]
    if not items:
        raise ValueError(f"{golden} has no items")
    encodings = load_tokenizer(model_dir).encode_batch([item["text"] for item in items])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    (vectors,) = session.run([embedding_output(session)], feeds(session, encodings))
    normalize = normalizes(model_dir)
    out = []
    for item, encoding, got in zip(items, encodings, vectors.astype(np.float64)):
        if normalize:
            got = got / max(np.linalg.norm(got), 1e-12)
        want = np.asarray(item["embedding"], dtype=np.float64)
        cosine = float(got @ want / max(np.linalg.norm(got) * np.linalg.norm(want), 1e-12))
        out.append((item, sum(encoding.attention_mask), cosine))
    return out
