"""The engine on a CUDA GPU, beside PyTorch on the same GPU, in one run.

Run on a machine with an NVIDIA GPU, PyTorch (CUDA) and `transformers`, given an
`akidb-embed` built with `--features cuda`:

    python3 gpu_bench.py --bin akidb-embed --model all-MiniLM-L6-v2=models/all-MiniLM-L6-v2 \
        --golden tests/golden --random bert-base=768x12 --out results.json

What it measures, each a line in the JSON written to --out and a row of the printed table:
- parity: the service's vectors on the GPU at f32, f16 and bf16 against the reference vectors
  (`--golden`), for every `--model` with a golden file of its name;
- engine: `akidb-embed bench-engine` (tokenization included) at batch 1 x 10 tokens, 32 x 10,
  32 x 128 and 256 x 128, per model and precision, and PyTorch (`transformers.BertModel`, mean
  pooling, the same tokenizer, the same texts, the same dtype) beside it;
- cpu: the same binary on the machine's CPU at f32, for scale.

`--random NAME=HIDDENxLAYERS` adds a BERT of that size with random weights (seeded) and the
vocabulary of the first `--model`: speed does not depend on the weights' values.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

SHAPES = [(1, 10), (32, 10), (32, 128), (256, 128)]
PRECISIONS = ["f32", "f16", "bf16"]


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1])


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb)


def random_model(base_dir, name, hidden, layers, work):
    """A BERT folder with random weights of the given size and base_dir's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    target = os.path.join(work, name)
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(base_dir, "config.json")) as f:
        config = json.load(f)
    config.update(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=hidden * 4,
    )
    torch.manual_seed(0)
    model = BertModel(BertConfig(**config), add_pooling_layer=False)
    model.save_pretrained(target, safe_serialization=True)
    for file in ("tokenizer.json", "modules.json", "sentence_bert_config.json"):
        src = os.path.join(base_dir, file)
        if os.path.exists(src):
            shutil.copy(src, target)
    pooling = os.path.join(base_dir, "1_Pooling")
    if os.path.isdir(pooling):
        shutil.copytree(pooling, os.path.join(target, "1_Pooling"), dirs_exist_ok=True)
    return target


def parity(binary, name, folder, golden_dir, precision, device):
    path = os.path.join(golden_dir, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        golden = json.load(f)
    texts = [item["text"] for item in golden["items"]]
    out = run_json(
        [binary, "embed", "--models-dir", os.path.dirname(folder), "--model",
         os.path.basename(folder), "--device", device, "--precision", precision, "--", *texts]
    )
    cosines = [cosine(v, item["embedding"]) for v, item in zip(out["embeddings"], golden["items"])]
    return {"kind": "parity", "model": name, "device": device, "precision": precision,
            "items": len(cosines), "min_cosine": min(cosines),
            "mean_cosine": sum(cosines) / len(cosines)}


def torch_peer(folder, texts, precision, seconds):
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[precision]
    model = BertModel.from_pretrained(folder, add_pooling_layer=False, torch_dtype=dtype)
    model = model.to("cuda").eval()
    tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    tokenizer.enable_truncation(128)
    tokenizer.enable_padding()

    def call():
        enc = tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc], device="cuda")
        mask = torch.tensor([e.attention_mask for e in enc], device="cuda")
        with torch.inference_mode():
            states = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).float()
            pooled = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return pooled.cpu()

    for _ in range(3):
        call()
    torch.cuda.synchronize()
    times = []
    started = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - started < seconds:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    times.sort()
    return {"engine": "pytorch", "sentences_per_s": len(texts) * len(times) / total,
            "p50_ms": times[len(times) // 2] * 1e3,
            "p95_ms": times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)] * 1e3,
            "iterations": len(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--model", action="append", default=[], help="NAME=FOLDER")
    parser.add_argument("--random", action="append", default=[], help="NAME=HIDDENxLAYERS")
    parser.add_argument("--golden", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/gpu-bench")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--cpu-threads", type=int, default=0)
    parser.add_argument("--device", default="cuda", help="the engine's device (cpu to try the script)")
    parser.add_argument("--no-peer", action="store_true", help="skip PyTorch")
    parser.add_argument("--shapes", default=",".join(f"{b}x{t}" for b, t in SHAPES),
                        help="BATCHxTOKENS,...")
    args = parser.parse_args()
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]

    machine = {"cpu_cores": os.cpu_count()}
    if not args.no_peer:
        import torch

        machine.update(gpu=torch.cuda.get_device_name(0), torch=torch.__version__,
                       cuda=torch.version.cuda)
    results = {"machine": {
        **machine,
        "nvidia_smi": shutil.which("nvidia-smi") and subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
             "--format=csv,noheader"], capture_output=True, text=True).stdout.strip(),
    }, "rows": []}
    rows = results["rows"]

    models = [tuple(m.split("=", 1)) for m in args.model]
    for spec in args.random:
        name, size = spec.split("=", 1)
        hidden, layers = (int(x) for x in size.split("x"))
        models.append((name, random_model(models[0][1], name, hidden, layers, args.work)))

    def emit(row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    for name, folder in models:
        for precision in PRECISIONS:
            row = parity(args.bin, name, folder, args.golden, precision, args.device)
            if row:
                emit(row)
    for name, folder in models:
        for precision in PRECISIONS:
            for batch, tokens in shapes:
                texts_file = os.path.join(args.work, f"texts-{name}-{batch}-{tokens}.json")
                run = run_json([
                    args.bin, "bench-engine", "--model", folder, "--batch", str(batch),
                    "--tokens", str(tokens), "--seconds", str(args.seconds), "--device", args.device,
                    "--precision", precision, "--texts-out", texts_file])
                with open(texts_file) as f:
                    texts = json.load(f)
                peer = None if args.no_peer else torch_peer(folder, texts, precision, args.seconds)
                emit({"kind": "engine", "model": name, "precision": precision, "batch": batch,
                      "tokens": tokens, "candle": run, "pytorch": peer,
                      "ratio": peer and run["sentences_per_s"] / peer["sentences_per_s"]})
        for batch, tokens in shapes[:3]:
            run = run_json([
                args.bin, "bench-engine", "--model", folder, "--batch", str(batch), "--tokens",
                str(tokens), "--seconds", str(args.seconds), "--device", "cpu",
                "--threads", str(args.cpu_threads)])
            emit({"kind": "cpu", "model": name, "batch": batch, "tokens": tokens, "candle": run})

    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print("\n| model | precision | batch x tokens | candle sent/s | pytorch sent/s | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["kind"] == "engine" and r["pytorch"]:
            print(f"| {r['model']} | {r['precision']} | {r['batch']}x{r['tokens']} | "
                  f"{r['candle']['sentences_per_s']:.0f} | {r['pytorch']['sentences_per_s']:.0f} | "
                  f"{r['ratio']:.2f} |")
    for r in rows:
        if r["kind"] == "parity":
            print(f"parity {r['model']} {r['precision']}: min cosine {r['min_cosine']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
