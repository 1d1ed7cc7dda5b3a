"""The L2-SP gradient added after backward() is the gradient of the penalty through autograd; the
fused AdamW makes the same update as torch's reference loop; bfloat16 autocast only where the
hardware has it."""

from __future__ import annotations

import torch

from incremental.config import TrainingSettings
from incremental.model.fit import add_l2sp_gradient, make_optimizer, parameter_groups


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


def test_the_fused_adamw_makes_the_reference_update() -> None:
    """Weight decay on the matrices only, the same steps as torch's loop over tensors."""
    torch.manual_seed(0)
    fused_model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 1))
    reference_model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 1))
    reference_model.load_state_dict(fused_model.state_dict())
    settings = TrainingSettings(learning_rate=1e-2, weight_decay=0.1)
    fused = make_optimizer(fused_model, settings)
    assert fused.defaults["fused"]
    reference = torch.optim.AdamW(parameter_groups(reference_model, 0.1), lr=1e-2, foreach=False)
    for _ in range(5):
        x = torch.randn(8, 4)
        for model, optimizer in ((fused_model, fused), (reference_model, reference)):
            model(x).pow(2).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    for (name, a), b in zip(fused_model.named_parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_a_warm_started_update_can_leave_the_word_embeddings_as_they_are() -> None:
    """`freeze_word_embeddings`: a warm start trains every weight but the word pieces' (no L2-SP
    copy of them either); a first model (a new head) trains them all."""
    from incremental.model import ranker as rk
    from incremental.model.fit import make_trainer

    settings = TrainingSettings(freeze_word_embeddings=True, learning_rate=1e-2)
    for new_head in (False, True):
        model, _ = rk.load_base("tiny", seed=0)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainer = make_trainer(model, settings, 3, new_head=new_head, device=torch.device("cpu"))
        words = "bert.embeddings.word_embeddings.weight"
        assert (words in trainer.anchors) is new_head
        ids = torch.randint(0, 100, (4, 6))
        for _ in range(3):
            trainer.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum().backward()
            trainer.optimizer.step()
            trainer.scheduler.step()  # out of the warm-up's first step (learning rate 0)
            trainer.optimizer.zero_grad()
        after = dict(model.named_parameters())
        assert torch.equal(before[words], after[words]) is not new_head
        assert not torch.equal(before["classifier.weight"], after["classifier.weight"])


def test_bfloat16_autocast_only_where_the_cpu_has_it_natively(tmp_path) -> None:
    from incremental.model.fit import make_trainer
    from incremental.model.ranker import native_bf16

    cpu = torch.device("cpu")
    with_bf16, without = tmp_path / "bf16", tmp_path / "plain"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512vl\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512vl\n")
    assert native_bf16(cpu, with_bf16)
    assert not native_bf16(cpu, without)
    assert not native_bf16(cpu, tmp_path / "not-linux")  # no /proc/cpuinfo: emulated, so off

    model = torch.nn.Linear(2, 1)
    assert make_trainer(model, TrainingSettings(bf16_autocast=False), 5, new_head=True, device=cpu).autocast is False
    on = make_trainer(model, TrainingSettings(bf16_autocast=True), 5, new_head=True, device=cpu).autocast
    assert on is native_bf16(cpu)
