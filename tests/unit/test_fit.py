"""The L2-SP gradient added after backward() is the gradient of the penalty through autograd."""

from __future__ import annotations

import torch

from incremental.model.fit import add_l2sp_gradient


def test_l2sp_gradient_matches_autograd() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    anchors = {n: p.detach().clone() + 0.1 * torch.randn_like(p) for n, p in model.named_parameters()}
    anchors.pop("1.bias")  # a weight without a starting point is not pulled
    x, strength = torch.randn(8, 4), 0.3

    model(x).sum().backward()
    penalty = add_l2sp_gradient(model, anchors, strength)
    manual = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    through_graph = 0.5 * strength * sum((p - anchors[n]).pow(2).sum() for n, p in model.named_parameters() if n in anchors)
    (model(x).sum() + through_graph).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(manual[name], param.grad)
    assert abs(penalty - through_graph.detach().item()) < 1e-6
