"""Convert the BERT weights of a sentence-transformers ONNX export to a HuggingFace `model.safetensors`.

The exporter kept HuggingFace names for embeddings, biases and LayerNorms but renamed the dense
weights (`onnx::MatMul_470`, stored [in, out]). Each such weight feeds a MatMul whose output is
added to a named bias, so the bias names the weight; the weight is transposed back to [out, in].

Usage: onnx_to_safetensors.py MODEL.onnx OUT.safetensors
"""

import sys

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import save_file

PREFIX = "model.0.auto_model."


def hf_name(name: str) -> str:
    if not name.startswith(PREFIX):
        raise ValueError(f"unexpected initializer name {name!r} (expected prefix {PREFIX!r})")
    return name[len(PREFIX):]


def convert(onnx_path: str, out_path: str) -> int:
    graph = onnx.load(onnx_path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers = {}
    for node in graph.node:
        for inp in node.input:
            consumers.setdefault(inp, []).append(node)

    tensors = {}
    for name, array in inits.items():
        if name.startswith(PREFIX):
            tensors[hf_name(name)] = array
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weights = [i for i in node.input if i in inits and not i.startswith(PREFIX)]
        if not weights:
            continue
        (weight,) = weights
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i in inits and i.endswith(".bias")]
        if len(biases) != 1:
            raise ValueError(f"cannot name MatMul weight {weight!r}: biases found {biases}")
        target = hf_name(biases[0])[: -len("bias")] + "weight"
        if target in tensors:
            raise ValueError(f"two weights map to {target!r}")
        tensors[target] = np.ascontiguousarray(inits[weight].T)
    renamed = [n for n in inits if not n.startswith(PREFIX)]
    dense = [k for k in tensors if k.endswith(".weight") and tensors[k].ndim == 2 and "embeddings" not in k]
    if not dense or len(dense) != len(renamed):
        raise ValueError(f"{len(renamed)} renamed initializers but {len(dense)} dense weights named")
    save_file({k: tensors[k].astype(np.float32) for k in sorted(tensors)}, out_path)
    return len(tensors)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    count = convert(sys.argv[1], sys.argv[2])
    print(f"wrote {count} tensors to {sys.argv[2]}")
