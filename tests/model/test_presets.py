"""The fast preset `minilm-l2` is MiniLM cut to its first two layers: same weights, loaded offline."""

from __future__ import annotations

import socket

import pytest
import torch

from incremental.model import ranker as rk


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test (the presets load from the packaged files),
    with the Hub's offline mode off: `local_files_only=True` on every load is what keeps it off the
    network, not the caller's HF_HUB_OFFLINE (which the package no longer sets)."""
    import huggingface_hub.constants

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access while loading a preset: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once, when it was imported


def test_fast_preset_is_minilm_first_two_layers(no_network: None, tmp_path) -> None:
    fast, fast_tokenizer = rk.load_base("minilm-l2")
    full, full_tokenizer = rk.load_base("minilm")
    assert rk.FAST_LAYERS == 2
    assert fast.config.num_hidden_layers == 2 and len(fast.bert.encoder.layer) == 2
    assert full.config.num_hidden_layers == 6
    assert fast.config.hidden_size == full.config.hidden_size
    assert fast_tokenizer.get_vocab() == full_tokenizer.get_vocab()

    fast_state, full_state = fast.state_dict(), full.state_dict()
    shared = [k for k in fast_state if k.startswith(("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1."))]
    assert any(k.startswith("bert.embeddings.") for k in shared)
    assert sum(k.startswith("bert.encoder.layer.1.") for k in shared) >= 10  # attention + feed-forward
    for name in shared:
        torch.testing.assert_close(fast_state[name], full_state[name], rtol=0, atol=0, msg=name)
    # nothing beyond layer 1 is there, and only the new one-logit head is not MiniLM's
    assert not any(k.startswith("bert.encoder.layer.2.") for k in fast_state)
    assert fast.config.num_labels == 1 and fast.classifier.out_features == 1
    assert set(fast_state) - set(shared) <= {k for k in fast_state if k.startswith(("bert.pooler.", "classifier."))}
    # a saved candidate (or a downloaded champion) loads back offline too
    again, _ = rk.load_dir(rk.save_dir(fast, fast_tokenizer, tmp_path / "candidate"))
    torch.testing.assert_close(again.state_dict()["classifier.weight"], fast_state["classifier.weight"], rtol=0, atol=0)


def test_presets_head_is_seeded() -> None:
    a, _ = rk.load_base("minilm-l2", seed=3)
    b, _ = rk.load_base("minilm-l2", seed=3)
    torch.testing.assert_close(a.classifier.weight, b.classifier.weight, rtol=0, atol=0)
