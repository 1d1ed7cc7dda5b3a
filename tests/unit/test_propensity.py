"""The examination curve estimated from click logs (incremental.model.propensity) and the training loss
that uses it (incremental.model.fit.click_loss)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from incremental.model.fit import click_loss
from incremental.model.propensity import estimate, unbiased


def _pbm_logs(exam: np.ndarray, rows: int = 30_000, pairs: int = 3_000, seed: int = 0) -> pd.DataFrame:
    """Clicks from the position-based model with a known examination curve: each (query, product)
    pair has its own relevance and is shown at random positions in different sessions."""
    rng = np.random.default_rng(seed)
    relevance = rng.beta(1, 3, pairs)
    pair = rng.integers(0, pairs, rows)
    position = rng.integers(1, len(exam) + 1, rows)
    clicked = rng.random(rows) < relevance[pair] * exam[position - 1]
    return pd.DataFrame({"query": (pair // 10).astype(str), "product_id": pair.astype(str),
                         "position": position, "clicked": clicked.astype(int)})


@pytest.mark.parametrize("eta", [0.7, 1.2])
def test_estimate_recovers_a_known_position_bias(eta: float) -> None:
    truth = np.arange(1, 11) ** -eta
    found = estimate(_pbm_logs(truth))
    assert found.probability[0] == 1.0
    assert np.abs(np.array(found.probability) - truth).max() < 0.08, (found.probability, truth)
    assert found.informative_rows > 0.9 * found.rows


def test_no_bias_gives_a_flat_curve() -> None:
    found = estimate(_pbm_logs(np.ones(10)))
    assert min(found.probability) > 0.85, found.probability


def test_pairs_seen_once_say_nothing_and_too_little_means_no_correction() -> None:
    logs = _pbm_logs(np.arange(1, 11) ** -0.7, rows=5_000, pairs=5_000_000)  # nearly every pair once
    found = estimate(logs)
    assert found.informative_rows < 0.05 * found.rows
    assert found.probability == (1.0,) * 10 and "not estimated" in found.note  # flat, and it says why
    assert "note" in found.to_dict()
    # below the minimum, forced: still non-increasing and bounded below (weights at most 1 / 0.02)
    forced = estimate(logs, min_informative_rows=0)
    assert forced.probability == tuple(sorted(forced.probability, reverse=True))
    assert min(forced.probability) >= 0.02


def test_click_loss_is_bce_without_correction_and_discounts_unexamined_negatives() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 0.0])
    clicks = torch.tensor([1.0, 0.0, 0.0, 1.0])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, clicks)
    assert torch.isclose(click_loss(logits, clicks, torch.ones(4)), plain)
    assert torch.isclose(click_loss(logits, clicks, torch.full((4,), 1 - 1e-6)), plain, atol=1e-4)
    # an unclicked row far down the page (rarely examined) costs less than the same row at the top
    top = click_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.999]))
    low = click_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.2]))
    assert low < top
    assert unbiased(5).of(np.array([1, 7, 30])).tolist() == [1.0, 1.0, 1.0]


def test_click_loss_keeps_the_gradient_of_a_confident_wrong_logit() -> None:
    # an unclicked row at a fully examined position (position 1: examination 1) in a batch with a
    # correction: its loss and gradient are plain BCE's at any logit (a clamp made them 16.1 and 0 past ~16)
    logits = torch.tensor([25.0, 0.0], dtype=torch.float64, requires_grad=True)
    loss = click_loss(logits, torch.tensor([0.0, 1.0], dtype=torch.float64),
                      torch.tensor([1.0, 0.5], dtype=torch.float64))
    (grad,) = torch.autograd.grad(loss, logits)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(25.0, dtype=torch.float64),
                                                               torch.tensor(0.0, dtype=torch.float64))
    assert torch.isclose(2 * loss - torch.log(torch.tensor(4.0, dtype=torch.float64)), bce)  # row 2: -log(0.25)
    assert torch.isclose(2 * grad[0], torch.sigmoid(torch.tensor(25.0, dtype=torch.float64)))
