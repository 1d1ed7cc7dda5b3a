"""Where one training step's time goes: forward + backward, the L2-SP gradient, clipping, the optimizer.

The hourly update's step (`incremental.model.fit.Trainer.step`), taken apart and timed per part on
the same batch (32 query-title pairs of simulated text, padded to their longest), for three set-ups
run in turn, `--rounds` times each, in one process:

- `reference`: AdamW as torch runs it on the CPU by default (a loop over tensors), every weight trained;
- `fused`: AdamW with torch's fused kernel (`fit.make_optimizer` since 2026-12-06);
- `fused, frozen words`: also the word-piece embeddings frozen (`training.freeze_word_embeddings`,
  the hourly update's default: a warm start leaves 11.7M of minilm-l2's 15.5M weights as they are);
- `fused, frozen words, bf16`: also the forward pass under bfloat16 autocast (`training.bf16_autocast`,
  used where the hardware has it natively: `ranker.native_bf16`; the loss and the update in float32).

    .venv/bin/python benchmarks/step_bench.py [--preset minilm-l2] [--steps 25] [--rounds 2]

Results: benchmarks/results/step.json (milliseconds per step, medians over rounds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks._record import record  # noqa: E402
from incremental.config import TrainingSettings  # noqa: E402
from incremental.model import ranker as rk  # noqa: E402
from incremental.model.fit import add_l2sp_gradient, make_optimizer, parameter_groups  # noqa: E402

SETUPS = ("reference", "fused", "fused, frozen words", "fused, frozen words, bf16")
PARTS = ("forward_backward", "l2sp", "clip", "optimizer")


def batch(tokenizer: object, size: int = 32) -> dict[str, torch.Tensor]:
    queries = [f"cordless drill {i}" for i in range(size)]
    titles = [f"brushless 18v drill driver kit with battery and charger, model {i}" for i in range(size)]
    return dict(tokenizer(queries, titles, padding=True, truncation=True, max_length=64, return_tensors="pt"))  # type: ignore[operator]


def time_steps(preset: str, setup: str, steps: int) -> dict[str, float]:
    """Milliseconds per step, per part, after 5 warm-up steps."""
    torch.manual_seed(0)
    model, tokenizer = rk.load_base(preset, seed=0)
    model.train()
    settings = TrainingSettings()
    if setup.startswith("fused, frozen words"):
        model.get_input_embeddings().weight.requires_grad_(False)
    bf16 = setup.endswith("bf16")
    optimizer = (torch.optim.AdamW(parameter_groups(model, settings.weight_decay), lr=2e-5, foreach=False)
                 if setup == "reference" else make_optimizer(model, settings))
    anchors = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    inputs, labels = batch(tokenizer), torch.rand(32)
    spent = dict.fromkeys(PARTS, 0.0)
    for step in range(steps + 5):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**inputs).logits.squeeze(-1)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels).backward()
        t1 = time.perf_counter()
        add_l2sp_gradient(model, anchors, settings.l2sp_strength)
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if step >= 5:
            for part, seconds in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[part] += seconds
    out = {part: 1000 * seconds / steps for part, seconds in spent.items()}
    return {**out, "total": sum(out.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="minilm-l2")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {s: [] for s in SETUPS}
    for r in range(args.rounds):
        for setup in SETUPS:
            rounds[setup].append(time_steps(args.preset, setup, args.steps))
            print(f"round {r + 1}/{args.rounds} {setup}: {rounds[setup][-1]['total']:.1f} ms/step", flush=True)
    medians = {s: {k: round(statistics.median(x[k] for x in runs), 1) for k in (*PARTS, "total")}
               for s, runs in rounds.items()}
    reference = medians["reference"]["total"]
    record("step", {"preset": args.preset, "native_bf16": rk.native_bf16(torch.device("cpu")), "batch": 32, "steps": args.steps, "rounds": args.rounds,
                    "torch_threads": torch.get_num_threads(), "load_average_1m": round(os.getloadavg()[0], 2),
                    "ms_per_step": medians,
                    "speed_vs_reference": {s: round(reference / m["total"], 2) for s, m in medians.items()}},
           packages=("torch", "transformers"))


if __name__ == "__main__":
    main()
