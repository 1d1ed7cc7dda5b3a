"""What early stopping watches: the loss, or the click AUC of its rows (`training.early_stopping_metric`)."""

from __future__ import annotations

import torch

from incremental.config import TrainingSettings
from incremental.model.fit import FitState, _early_stopping, _stopping_score


def _watch(metric: str, evaluations: list[dict[str, float]], patience: int = 2) -> tuple[int, int | None]:
    """Feed evaluations 1, 2, ... to early stopping; (the best evaluation, the one that stopped it)."""
    t = TrainingSettings(early_stopping_metric=metric)
    state, model = FitState(), torch.nn.Linear(1, 1)
    for i, evaluated in enumerate(evaluations, start=1):
        state.step = i
        if _early_stopping(state, model, _stopping_score(evaluated, t), patience):
            return state.best_step, i
    return state.best_step, None


def test_the_auc_keeps_training_while_the_ranking_improves_and_the_loss_does_not() -> None:
    # a fresh head learns the base rate first (the loss falls), then the ranking (the AUC rises)
    # while the loss wobbles in the noise of a few hundred sessions
    evaluations = [{"stopping_loss": 0.40, "stopping_auc": 0.55}, {"stopping_loss": 0.35, "stopping_auc": 0.58},
                   {"stopping_loss": 0.36, "stopping_auc": 0.66}, {"stopping_loss": 0.37, "stopping_auc": 0.72},
                   {"stopping_loss": 0.36, "stopping_auc": 0.71}, {"stopping_loss": 0.38, "stopping_auc": 0.70}]
    assert _watch("loss", evaluations) == (2, 4)  # stopped at 4, back to the weights of 2
    assert _watch("auc", evaluations) == (4, 6)


def test_without_both_classes_the_auc_falls_back_to_the_loss() -> None:
    t = TrainingSettings(early_stopping_metric="auc")
    assert _stopping_score({"stopping_loss": 0.3}, t) == 0.3
    assert _stopping_score({"stopping_loss": 0.3, "stopping_auc": 0.8}, t) == -0.8
    assert _stopping_score({"stopping_loss": 0.3, "stopping_auc": 0.8}, TrainingSettings()) == 0.3
