"""The training loop itself: batches, optimiser, L2-SP, early stopping. No MLflow, no files.

`fit` takes a model and tokenised rows and trains for `max_steps` steps (or until the loss on
the early-stopping rows stops improving; never the gate's holdout), reporting through callbacks:
`on_metrics(step, metrics)` after every step
and evaluation, `on_checkpoint(step, state)` every `checkpoint_every` steps. `train.run_update`
wires those to MLflow and to resumable checkpoints; a benchmark can call `fit` alone.

The batch at step s is a pure function of (seed, s) (`batch_indices`), and `FitState` holds
everything else a resumed run needs, so a run resumed from a checkpoint ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from incremental.model import ranker as rk
from incremental.model.weak_labels import LABEL_COLUMN
from incremental.progress import Progress

if TYPE_CHECKING:
    from incremental.config import TrainingSettings
    from incremental.model.propensity import Examination

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Rows of the batch at `step`: epoch e is a permutation seeded by (seed, e), and step s
    takes positions [s*B, (s+1)*B) of their concatenation. No iterator state, so resuming at
    step s reproduces the rest of the run exactly."""
    out: list[int] = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[offset : offset + batch_size - len(out)]
        out.extend(take.tolist())
        position += len(take)
    return np.asarray(out)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on biases or LayerNorm (as BERT was trained)."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or id(param) in norm_params else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, t: TrainingSettings) -> torch.optim.Optimizer:
    """AdamW (or SGD with momentum). AdamW uses torch's fused kernel on CPU and CUDA: the same update
    in one pass over the weights; on CPU torch's default is a loop per tensor, and the step took
    76-88 ms of a minilm-l2 step's 270-300 ms against 17-20 ms fused (batch 32, 2 cores)."""
    groups = parameter_groups(model, t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.learning_rate, momentum=0.9)
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=t.learning_rate, fused=fused)


def add_l2sp_gradient(model: torch.nn.Module, anchors: dict[str, torch.Tensor], strength: float) -> float:
    """Add the gradient of strength/2 * ||w - w0||^2 (Li et al. 2018: keeps the update near the
    champion, which is what it must not forget) to the weights' gradients, and return the penalty.

    Its gradient is strength * (w - w0), added after `backward()` rather than built into the
    autograd graph: the same update (clipping comes after), at a fraction of the cost: through
    autograd the penalty made each step 20% slower (benchmarks/results/train_cost.json).
    """
    total = torch.zeros((), device=next(model.parameters()).device)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in anchors and param.grad is not None:
                diff = param - anchors[name]
                param.grad.add_(diff, alpha=strength)
                total += torch.linalg.vector_norm(diff).square()  # no squared copy of the weights
    return 0.5 * strength * float(total)  # one device sync per step


class RngState(TypedDict):
    """Every random generator's state, in plain types and tensors (a checkpoint's `rng`)."""

    python: tuple[int, tuple[int, ...], float | None]
    numpy: list[Any]  # numpy's legacy state: name, keys, pos, has_gauss, cached
    torch: torch.Tensor
    cuda: list[torch.Tensor]


def rng_state() -> RngState:
    """Every RNG's state as tensors and plain types only, so a checkpoint loads with
    `torch.load(weights_only=True)` (no pickled objects, no code run on loading)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "python": (int(version), tuple(int(x) for x in internal), gauss_next),
        "numpy": [str(name), [int(x) for x in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: RngState) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def click_loss(logits: torch.Tensor, clicks: torch.Tensor, examination: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of P(click) = examination x sigmoid(logit): the position term of PAL
    (Guo et al. 2019), used in training only. With examination 1 it is plain BCE on the logits.

    Unlike inverse propensity weights (1 / examination), nothing here grows without bound: an
    unclicked row at a rarely examined position simply says little.
    """
    if bool((examination >= 1).all()):  # no correction: the exact, stable BCE
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, clicks)
    log_click = torch.nn.functional.logsigmoid(logits) + torch.log(examination)
    # log(1 - e sigmoid(z)) = log(1 + (1 - e) exp(z)) - softplus(z): exact at e = 1 (plain BCE's
    # log sigmoid(-z)) and for any logit; no clamp, so a confident wrong logit keeps its gradient
    log_no_click = (torch.logaddexp(torch.zeros_like(logits), logits + torch.log1p(-examination))
                    - torch.nn.functional.softplus(logits))
    return -(clicks * log_click + (1 - clicks) * log_no_click).mean()


def stopping_eval(model: torch.nn.Module, data: FitData, autocast: bool) -> dict[str, float]:
    """The training objective and click AUC on the early-stopping rows (eval mode, no gradients)."""
    from incremental.judge.metrics import roc_auc

    raw = rk.logits(model, data.stopping, pad_id=data.pad_id, autocast=autocast)
    loss = click_loss(torch.from_numpy(raw).double(), torch.from_numpy(data.stopping_labels).double(),
                      data.stopping_examination.double()).item()
    out = {"stopping_loss": loss}
    if 0 < data.stopping_labels.sum() < len(data.stopping_labels):  # AUC needs both classes
        out["stopping_auc"] = float(roc_auc(data.stopping_labels, raw))
    return out


@dataclass
class FitData:
    """Tokenised pairs (`model.tokenize`), their labels (the click, or a training row's `label` where
    `weak_labels` mixed BM25 in; early stopping judges clicks) and the examination probability of
    their positions (1.0 everywhere without a position correction)."""

    train: dict[str, list[list[int]]]
    train_labels: torch.Tensor
    train_examination: torch.Tensor
    stopping: dict[str, list[list[int]]]
    stopping_labels: np.ndarray
    stopping_examination: torch.Tensor
    pad_id: int

    @property
    def train_rows(self) -> int:
        return len(self.train["input_ids"])

    @classmethod
    def from_frames(cls, tokenizer: Any, train: Any, stopping: Any, max_length: int,
                    examination: Examination | None = None) -> FitData:
        """Tokenise once; batches are padded to their own longest pair (short queries and titles
        make that ~10x cheaper than padding to max_length)."""
        def exam(frame: Any) -> torch.Tensor:
            if examination is None:
                return torch.ones(len(frame), dtype=torch.float32)
            return torch.tensor(examination.of(frame["position"].to_numpy()), dtype=torch.float32)

        return cls(
            train=rk.tokenize(tokenizer, *rk.frame_texts(train), max_length),
            train_labels=torch.tensor(train[LABEL_COLUMN if LABEL_COLUMN in train else "clicked"].to_numpy(dtype=np.float32)),
            train_examination=exam(train),
            stopping=rk.tokenize(tokenizer, *rk.frame_texts(stopping), max_length),
            stopping_labels=stopping["clicked"].to_numpy(dtype=np.float64),
            stopping_examination=exam(stopping),
            pad_id=tokenizer.pad_token_id,
        )


@dataclass
class FitState:
    """Where a run stands: a checkpoint holds this (`to_dict`), and a resumed run starts from it."""

    step: int = 0
    best_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    last_loss: float = math.nan
    seen: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> FitState:
        return cls(**payload)


@dataclass
class Trainer:
    """A model with its optimiser, schedule, L2-SP anchors and device: what one fit moves on."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device
    autocast: bool = False
    anchors: dict[str, torch.Tensor] = field(default_factory=dict)
    l2sp_strength: float = 0.0

    def step(self, data: FitData, index: np.ndarray, max_grad_norm: float) -> dict[str, float]:
        batch = rk.collate(data.train, index, data.pad_id, self.device)
        labels = data.train_labels[index].to(self.device)
        examination = data.train_examination[index].to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.model(**batch).logits.squeeze(-1)
        # the loss on the logits, in fp32; never `labels=` (transformers would compute MSE)
        loss = click_loss(logits.float(), labels, examination)
        loss.backward()
        penalty = add_l2sp_gradient(self.model, self.anchors, self.l2sp_strength) if self.anchors else 0.0
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)  # free the gradients' memory at once
        return {"train_loss": loss.item(), "l2sp_penalty": penalty, "grad_norm": float(grad_norm),
                "learning_rate": self.scheduler.get_last_lr()[0]}


def make_trainer(model: torch.nn.Module, t: TrainingSettings, max_steps: int, *, new_head: bool,
                 device: torch.device | None = None) -> Trainer:
    """The model on its device (default: `rk.pick_device()`), AdamW with a linear warm-up and decay
    over `max_steps`, and the L2-SP anchors: the starting weights, except a head that was just
    initialised at random. A warm start (`new_head` False) with `freeze_word_embeddings` leaves
    the word embeddings as they are."""
    device = device or rk.pick_device()
    model.to(device)
    if t.freeze_word_embeddings and not new_head:
        cast(PreTrainedModel, model).get_input_embeddings().weight.requires_grad_(False)
    anchors = {}
    if t.l2sp_strength > 0:
        anchors = {name: p.detach().clone() for name, p in model.named_parameters()
                   if p.requires_grad and not (new_head and name.startswith("classifier."))}
    optimizer = make_optimizer(model, t)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(t.warmup_fraction * max_steps), max_steps)
    autocast = t.bf16_autocast and rk.native_bf16(device)
    return Trainer(model, optimizer, scheduler, device, autocast, anchors, t.l2sp_strength)


def fit(
    trainer: Trainer,
    data: FitData,
    t: TrainingSettings,
    *,
    max_steps: int,
    state: FitState | None = None,
    on_metrics: Callable[[int, dict[str, float]], None] | None = None,
    on_checkpoint: Callable[[FitState], None] | None = None,
    label: str = "training",
    evaluates: bool = True,
    agree: Callable[[bool], bool] | None = None,
) -> FitState:
    """Train from `state` (a fresh run when None) to `max_steps`, stopping early when the loss (or
    the click AUC: `early_stopping_metric`) on the early-stopping rows has not improved for
    `early_stopping_patience` evaluations; end on the best weights.

    Several processes (`model.distributed`): `trainer.model` is the DDP wrapper; only the process
    with `evaluates` runs the early-stopping evaluations (on the plain module), and at each
    evaluation step `agree` hands every process that one's decision to stop."""
    state = state or FitState()
    progress = Progress(label, max_steps, done=state.step)
    model = trainer.model
    model.train()
    plain = model.module if isinstance(model, DistributedDataParallel) else model  # evaluated, its weights kept
    while state.step < max_steps:
        tick = time.perf_counter()
        index = batch_indices(data.train_rows, t.batch_size, t.seed, state.step)
        metrics = trainer.step(data, index, t.max_grad_norm)
        state.step += 1
        state.seen += len(index)
        state.last_loss = metrics["train_loss"]
        took = time.perf_counter() - tick
        state.seconds += took
        metrics["samples_per_s"] = len(index) / took
        stop = False
        if len(data.stopping_labels) and (state.step % t.eval_every == 0 or state.step == max_steps):
            if evaluates:
                evaluated = stopping_eval(plain, data, trainer.autocast)
                metrics.update(evaluated)
                stop = _early_stopping(state, plain, _stopping_score(evaluated, t), t.early_stopping_patience)
            if agree is not None:
                stop = agree(stop)
        if on_metrics:
            on_metrics(state.step, metrics)
        progress.update(state.step, _detail(state))
        if on_checkpoint and state.step % t.checkpoint_every == 0 and state.step < max_steps and not stop:
            on_checkpoint(state)
        if stop:
            log.info("early stop at step %d: the early-stopping %s has not improved since step %d", state.step,
                     t.early_stopping_metric, state.best_step)
            break
    progress.finish(state.step, _detail(state))
    if state.best_weights is not None and state.best_step != state.step:
        plain.load_state_dict(state.best_weights)  # end with the best weights seen on the early-stopping rows
    return state


def _detail(state: FitState) -> str:
    return f"{state.seen / max(state.seconds, 1e-9):.1f} samples/s | loss {state.last_loss:.4f}"


def _stopping_score(evaluated: dict[str, float], t: TrainingSettings) -> float:
    """Lower is better: the loss, or the AUC negated (a split with one class has no AUC: its loss then)."""
    if t.early_stopping_metric == "auc" and "stopping_auc" in evaluated:
        return -evaluated["stopping_auc"]
    return evaluated["stopping_loss"]


def _early_stopping(state: FitState, model: torch.nn.Module, loss: float, patience: int) -> bool:
    """`loss`: the stopping score, lower is better (`best_loss` keeps its name: checkpoints carry it)."""
    if loss < state.best_loss:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        state.best_loss, state.best_step, state.bad_evals, state.best_weights = loss, state.step, 0, weights
        return False
    state.bad_evals += 1
    return state.bad_evals >= patience
