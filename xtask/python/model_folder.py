"""What the Python tools read from a sentence-transformers model folder: its max_seq_length, whether
it normalises, and its tokenizer set up as the Candle side tokenizes (pad to the longest text of
a batch, truncate at the model's limit)."""

import json
from pathlib import Path

from tokenizers import Tokenizer

DEFAULT_MAX_SEQ_LENGTH = 128


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
