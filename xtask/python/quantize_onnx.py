"""ONNX Runtime's own int8 of a model: its dynamic quantization of an fp32 export, the peer of
`embedding.precision = "int8"` in the benchmarks.

`onnxruntime.quantization.quantize_dynamic` with int8 weights, one scale per output channel, and
inputs quantized per call (`DynamicQuantizeLinear`, `MatMulInteger`): the recipe ONNX Runtime
documents for transformers on CPUs, with per-channel weights because one scale per tensor is far
worse here (all-MiniLM-L6-v2's reference texts: lowest cosine 0.84 against 0.98). The output is
byte-identical from run to run, so its sha256 is pinned like every other model file. With `--golden FILE` it reports the lowest and mean cosine of its
sentence embeddings to the reference vectors and refuses to keep a file below `--min-cosine`.

Usage: quantize_onnx.py MODEL_DIR IN.onnx OUT.onnx [--golden FILE] [--min-cosine 0.95]
"""

import argparse
import os
import sys
from pathlib import Path

from model_folder import reference_cosines


def main() -> int:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="the model folder (tokenizer, modules.json)")
    parser.add_argument("source", type=Path, help="the fp32 ONNX file")
    parser.add_argument("out", type=Path, help="the int8 ONNX file to write")
    parser.add_argument("--golden", type=Path, help="reference JSON: {items: [{text, embedding}]}")
    parser.add_argument("--min-cosine", type=float, default=0.95)
    args = parser.parse_args()

    partial = args.out.with_name(args.out.name + ".partial")
    try:
        quantize_dynamic(
            str(args.source), str(partial), weight_type=QuantType.QInt8, per_channel=True
        )
        if args.golden is not None:
            found = [c for _, _, c in reference_cosines(args.model_dir, partial, args.golden)]
            lowest, mean = min(found), sum(found) / len(found)
            print(
                f"ONNX Runtime int8 against {args.golden}: {len(found)} texts, "
                f"lowest cosine {lowest:.4f}, mean {mean:.4f}"
            )
            if not lowest >= args.min_cosine:
                raise ValueError(f"lowest cosine {lowest:.4f} < {args.min_cosine}")
        os.replace(partial, args.out)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"quantize_onnx: {args.source}: {error}", file=sys.stderr)
        return 1
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
