"""Export the BERT encoder of a HuggingFace model folder (`config.json` + `model.safetensors`) to
an fp32 ONNX graph, so that ONNX Runtime runs the very weights Candle serves.

The graph is written with `onnx.helper` (opset 17, no torch): inputs `input_ids`,
`attention_mask` and `token_type_ids` (int64, [batch, seq]); outputs `last_hidden_state`
([batch, seq, hidden]) and `461` ([batch, hidden]: the attention-masked mean of the token states,
as sentence-transformers pools; not normalised). The pooled output keeps the name it has in the
packaged paraphrase-MiniLM-L3-v2 export, so that `ort_bench.py`, of this commit and of earlier
ones, reads either file alike. The same folder always gives a byte-identical file, so its sha256
can be pinned.

With `--golden FILE` the export is checked before it is kept: ONNX Runtime embeds every text of
the reference file (tokenized as the model does, truncated at its max_seq_length), each vector
must have the reference token count and a cosine of at least `--min-cosine` with the reference
vector (L2-normalised first when the model's pipeline normalises, as the reference is).

Usage: safetensors_to_onnx.py MODEL_DIR OUT.onnx [--golden FILE] [--min-cosine 0.9999]
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

from model_folder import reference_cosines

OPSET = 17
IR_VERSION = 8
PRODUCER = "akidb xtask safetensors_to_onnx.py"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOKEN_OUTPUT = "last_hidden_state"
SENTENCE_OUTPUT = "461"


class ExportError(Exception):
    """The model folder cannot be exported, or the export fails its check."""


class Graph:
    """Nodes and initializers of the graph under construction, named deterministically."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}

    def weight(self, name: str, transpose: bool = False) -> str:
        """An initializer holding the model tensor `name`; a transposed one is named `name.T`."""
        if name not in self.weights:
            raise ExportError(f"model.safetensors has no tensor {name!r}")
        array = self.weights[name].astype(np.float32)
        if transpose:
            array, name = array.T, f"{name}.T"
        return self.initializer(name, array)

    def scalar(self, name: str, value: float) -> str:
        """A float32 scalar constant of the graph itself."""
        return self.initializer(f"const.{name}", np.array(value, dtype=np.float32))

    def ints(self, name: str, values: list[int]) -> str:
        """An int64 vector constant of the graph itself (axes, shapes)."""
        return self.initializer(f"const.{name}", np.array(values, dtype=np.int64))

    def initializer(self, name: str, array: np.ndarray) -> str:
        if name not in self.initializers:
            tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
            self.initializers[name] = tensor
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attributes) -> str:
        """Appends one node whose single output (and node name) is `output`."""
        node = helper.make_node(op_type, inputs, [output], name=output, **attributes)
        self.nodes.append(node)
        return output


def layer_norm(g: Graph, x: str, prefix: str, eps: float) -> str:
    """The LayerNorm `prefix` over the last axis."""
    scale, bias = g.weight(f"{prefix}.weight"), g.weight(f"{prefix}.bias")
    return g.op("LayerNormalization", [x, scale, bias], f"{prefix}/Out", axis=-1, epsilon=eps)


def dense(g: Graph, x: str, prefix: str) -> str:
    """`x @ W.T + b` for the Linear layer `prefix` (W stored [out, in], as torch does)."""
    product = g.op("MatMul", [x, g.weight(f"{prefix}.weight", transpose=True)], f"{prefix}/MatMul")
    return g.op("Add", [product, g.weight(f"{prefix}.bias")], f"{prefix}/Add")


def attention(g: Graph, x: str, prefix: str, config: dict, mask_bias: str) -> str:
    """Multi-head self-attention with the additive mask; the heads merged back to [b, s, h]."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    if hidden % heads:
        raise ExportError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    head = hidden // heads
    split = g.ints("split_heads_shape", [0, 0, heads, head])

    def heads_of(name: str, perm: list[int]) -> str:
        projected = dense(g, x, f"{prefix}.{name}")
        reshaped = g.op("Reshape", [projected, split], f"{prefix}.{name}/Heads")
        return g.op("Transpose", [reshaped], f"{prefix}.{name}/Transpose", perm=perm)

    q = heads_of("query", [0, 2, 1, 3])  # [batch, heads, seq, head]
    k = heads_of("key", [0, 2, 3, 1])  # [batch, heads, head, seq]
    v = heads_of("value", [0, 2, 1, 3])
    scores = g.op("MatMul", [q, k], f"{prefix}/Scores")
    scores = g.op("Div", [scores, g.scalar("sqrt_head_size", math.sqrt(head))], f"{prefix}/Scaled")
    scores = g.op("Add", [scores, mask_bias], f"{prefix}/Masked")
    probs = g.op("Softmax", [scores], f"{prefix}/Softmax", axis=-1)
    context = g.op("MatMul", [probs, v], f"{prefix}/Context")
    context = g.op("Transpose", [context], f"{prefix}/Merge", perm=[0, 2, 1, 3])
    return g.op("Reshape", [context, g.ints("merge_heads_shape", [0, 0, hidden])], f"{prefix}/Out")


def gelu(g: Graph, x: str, prefix: str) -> str:
    """Exact GELU, x * (1 + erf(x / sqrt(2))) * 0.5 (the pattern ONNX Runtime fuses)."""
    erf = g.op("Erf", [g.op("Div", [x, g.scalar("sqrt2", math.sqrt(2.0))], f"{prefix}/Div")],
               f"{prefix}/Erf")
    erf = g.op("Add", [erf, g.scalar("one", 1.0)], f"{prefix}/Add")
    return g.op("Mul", [g.op("Mul", [x, erf], f"{prefix}/Mul"), g.scalar("half", 0.5)],
                f"{prefix}/Half")


def encoder_layer(g: Graph, x: str, i: int, config: dict, mask_bias: str) -> str:
    eps = float(config.get("layer_norm_eps", 1e-12))
    p = f"encoder.layer.{i}"
    attended = attention(g, x, f"{p}.attention.self", config, mask_bias)
    attended = dense(g, attended, f"{p}.attention.output.dense")
    attended = g.op("Add", [attended, x], f"{p}.attention.output/Residual")
    attended = layer_norm(g, attended, f"{p}.attention.output.LayerNorm", eps)
    inner = gelu(g, dense(g, attended, f"{p}.intermediate.dense"), f"{p}.intermediate.gelu")
    out = dense(g, inner, f"{p}.output.dense")
    out = g.op("Add", [out, attended], f"{p}.output/Residual")
    return layer_norm(g, out, f"{p}.output.LayerNorm", eps)


def load_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """The model's tensors, without a `bert.` prefix if the checkpoint has one."""
    weights = load_file(str(model_dir / "model.safetensors"))
    if "embeddings.word_embeddings.weight" not in weights:
        weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    return weights


def build(model_dir: Path) -> onnx.ModelProto:
    """The graph of the BERT encoder in `model_dir`, mean pooling included."""
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ExportError(f"config.json: model_type {config.get('model_type')!r} is not 'bert'")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ExportError("config.json: only absolute position embeddings are exported")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ExportError(f"config.json: hidden_act {config['hidden_act']!r} is not exact 'gelu'")
    eps = float(config.get("layer_norm_eps", 1e-12))
    hidden = config["hidden_size"]
    g = Graph(load_weights(model_dir))

    # Embeddings: word + token type + position (rows 0..seq), then LayerNorm.
    seq_len = g.op("Shape", ["input_ids"], "embeddings/SeqLen", start=1, end=2)
    zero = g.ints("zero", [0])
    position_table = g.weight("embeddings.position_embeddings.weight")
    positions = g.op("Slice", [position_table, zero, seq_len, zero], "embeddings/Positions")
    word_table = g.weight("embeddings.word_embeddings.weight")
    type_table = g.weight("embeddings.token_type_embeddings.weight")
    words = g.op("Gather", [word_table, "input_ids"], "embeddings/Words")
    types = g.op("Gather", [type_table, "token_type_ids"], "embeddings/Types")
    x = g.op("Add", [words, types], "embeddings/WordsTypes")
    x = g.op("Add", [x, positions], "embeddings/Sum")
    x = layer_norm(g, x, "embeddings.LayerNorm", eps)

    # Additive attention mask, [batch, 1, 1, seq]: 0 where attended, float32 min where padded.
    mask = g.op("Cast", ["attention_mask"], "mask/Float", to=TensorProto.FLOAT)
    mask4 = g.op("Unsqueeze", [mask, g.ints("axes_1_2", [1, 2])], "mask/Unsqueeze")
    inverted = g.op("Sub", [g.scalar("one", 1.0), mask4], "mask/Inverted")
    lowest = float(np.finfo(np.float32).min)
    mask_bias = g.op("Mul", [inverted, g.scalar("float32_min", lowest)], "mask/Bias")

    for i in range(config["num_hidden_layers"]):
        x = encoder_layer(g, x, i, config, mask_bias)
    g.op("Identity", [x], TOKEN_OUTPUT)

    # Masked mean over the sequence: sum(state * mask) / max(sum(mask), 1e-9).
    mask3 = g.op("Unsqueeze", [mask, g.ints("axes_2", [2])], "pool/Mask")
    seq_axis = g.ints("axes_1", [1])
    masked = g.op("Mul", [x, mask3], "pool/Masked")
    summed = g.op("ReduceSum", [masked, seq_axis], "pool/Sum", keepdims=0)
    counts = g.op("ReduceSum", [mask3, seq_axis], "pool/Count", keepdims=0)
    counts = g.op("Max", [counts, g.scalar("min_count", 1e-9)], "pool/Clamped")
    g.op("Div", [summed, counts], SENTENCE_OUTPUT)

    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
           for n in INPUTS]
    outputs = [
        helper.make_tensor_value_info(
            TOKEN_OUTPUT, TensorProto.FLOAT, ["batch", "sequence", hidden]
        ),
        helper.make_tensor_value_info(SENTENCE_OUTPUT, TensorProto.FLOAT, ["batch", hidden]),
    ]
    initializers = list(g.initializers.values())
    graph = helper.make_graph(g.nodes, "bert_encoder", ids, outputs, initializer=initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def check(model_dir: Path, onnx_path: Path, golden: Path, min_cosine: float) -> tuple[float, int]:
    """Embeds the reference texts with ONNX Runtime; returns the lowest cosine and the number of
    texts, or raises ExportError naming every text that disagrees."""
    try:
        found = reference_cosines(model_dir, onnx_path, golden)
    except ValueError as error:
        raise ExportError(str(error)) from error
    failures = []
    for item, tokens, cosine in found:
        text = repr(item["text"][:40])
        if tokens != item["tokens"]:
            failures.append(f"{text}: {tokens} tokens, the reference has {item['tokens']}")
        if not cosine >= min_cosine:
            failures.append(f"{text}: cosine {cosine:.6f} < {min_cosine}")
    if failures:
        listed = "\n  ".join(failures)
        raise ExportError(f"the export disagrees with {golden} ({len(failures)}):\n  {listed}")
    return min(cosine for _, _, cosine in found), len(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="config.json and model.safetensors")
    parser.add_argument("out", type=Path, help="the ONNX file to write")
    parser.add_argument(
        "--golden", type=Path, help="reference JSON: {items: [{text, tokens, embedding}]}"
    )
    parser.add_argument("--min-cosine", type=float, default=0.9999)
    args = parser.parse_args()

    # Written beside the destination and moved there only once checked.
    partial = args.out.with_name(args.out.name + ".partial")
    try:
        model = build(args.model_dir)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(model.SerializeToString(deterministic=True))
        if args.golden is not None:
            lowest, count = check(args.model_dir, partial, args.golden, args.min_cosine)
            print(
                f"checked against {args.golden}: {count} texts, "
                f"min cosine {lowest:.12f} (1 - cos = {1 - lowest:.1e})"
            )
        os.replace(partial, args.out)
    except (ExportError, OSError, KeyError, ValueError, RuntimeError,
            onnx.checker.ValidationError) as error:
        print(f"safetensors_to_onnx: {args.model_dir}: {error}", file=sys.stderr)
        return 1
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(model.graph.node)} nodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
