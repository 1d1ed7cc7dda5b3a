"""Speed, memory and quality benchmarks of the pipeline, with their recorded results (`results/`).

Not part of the `incremental` package: run them from the repository root, as scripts
(`python benchmarks/latency_bench.py`) or, for the prequential benchmark, `python -m benchmarks.continual`.
"""
