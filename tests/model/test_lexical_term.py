"""The lexical term of a hybrid ranker (`training.lexical_term`): logit = transformer + w x the share
of the query's words found in the product text. w is saved with the model, serving computes the
same scores, w = 0 is the plain model, a model saved without the term still loads, and w learns."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import BASE, TINY_TRAINING, make_hour_frame

from incremental.model import ranker as rk
from incremental.model.fit import FitData, fit, make_optimizer, make_trainer, seed_everything

ROWS = pd.DataFrame({
    "query": ["red running shoes", "blue lamp", "leather bag", "grey jacket", "???"],
    "title": ["acme red running shoes", "nova blue desk lamp", "zenith brown leather bag", "peak grey rain coat", "x"],
    "brand": ["acme", "nova", None, "peak", None],
    "category": ["footwear", "home", "accessories", None, None],
})


def hybrid(seed: int = 0, w: float | None = None) -> tuple[torch.nn.Module, object]:
    model, tokenizer = rk.load_base("tiny", seed=seed, lexical=True)
    if w is not None:
        with torch.no_grad():
            model.lexical_weight.fill_(w)
    return model, tokenizer


def test_overlap_is_the_share_of_distinct_query_words_in_the_product_text() -> None:
    queries, texts = rk.frame_texts(ROWS)
    assert rk.lexical_overlap(queries, texts) == [1.0, 1.0, 1.0, 0.5, 0.0]
    # lowercase word runs; a repeated query word counts once; the brand and category are text too
    assert rk.lexical_overlap(["Drill drill 20V", "acme"], ["Cordless DRILL-driver", "x | acme"]) == [0.5, 1.0]


def test_zero_weight_is_the_plain_model_and_the_weight_moves_the_score() -> None:
    model, tokenizer = hybrid(seed=3)
    plain, _ = rk.load_base("tiny", seed=3)
    assert rk.has_lexical_term(model) and not rk.has_lexical_term(plain)
    assert model.lexical_weight.item() == rk.LEXICAL_INIT == 0.0
    np.testing.assert_allclose(rk.score_frame(model, tokenizer, ROWS), rk.score_frame(plain, tokenizer, ROWS),
                               atol=1e-6)
    with torch.no_grad():
        model.lexical_weight.fill_(2.0)
    raw_plain = rk.logits(plain, rk.tokenize(tokenizer, *rk.frame_texts(ROWS), 64), pad_id=tokenizer.pad_token_id)
    raw = rk.logits(model, rk.tokenize(tokenizer, *rk.frame_texts(ROWS), 64), pad_id=tokenizer.pad_token_id)
    np.testing.assert_allclose(raw - raw_plain, [2.0, 2.0, 2.0, 1.0, 0.0], atol=1e-5)


def test_the_term_is_saved_and_loaded_and_serving_scores_the_same(tmp_path) -> None:
    model, tokenizer = hybrid(seed=1, w=0.7)
    path = rk.save_dir(model, tokenizer, tmp_path / "hybrid")
    loaded, loaded_tokenizer = rk.load_dir(path)
    assert rk.has_lexical_term(loaded) and loaded.lexical_weight.item() == pytest.approx(0.7)
    direct = rk.score_frame(model, tokenizer, ROWS)
    np.testing.assert_allclose(rk.score_frame(loaded, loaded_tokenizer, ROWS), direct, atol=1e-6)

    served = rk.RankerPyfunc(max_length=64)  # what `incremental serve` runs (MLflow calls load_context)
    served.load_context(SimpleNamespace(artifacts={"model_dir": str(path)}))
    np.testing.assert_allclose(served.predict(None, ROWS), direct, atol=1e-6)
    np.testing.assert_allclose(served.predict(None, ROWS[["query", "title"]]),
                               rk.score(model, tokenizer, *rk.frame_texts(ROWS[["query", "title"]])), atol=1e-6)


def test_a_model_saved_without_the_term_loads_and_scores_as_before(tmp_path) -> None:
    plain, tokenizer = rk.load_base("tiny", seed=2)
    path = rk.save_dir(plain, tokenizer, tmp_path / "plain")
    loaded, _ = rk.load_dir(path)
    assert not rk.has_lexical_term(loaded) and not hasattr(loaded, "lexical_weight")
    np.testing.assert_allclose(rk.score_frame(loaded, tokenizer, ROWS), rk.score_frame(plain, tokenizer, ROWS),
                               atol=1e-6)


def test_the_weight_has_its_own_learning_rate_and_no_decay() -> None:
    model, _ = hybrid()
    t = TINY_TRAINING.model_copy(update={"lexical_lr_scale": 50.0})
    groups = make_optimizer(model, t).param_groups
    (lexical,) = [g for g in groups if any(p is model.lexical_weight for p in g["params"])]
    assert lexical["params"] == [model.lexical_weight] and lexical["weight_decay"] == 0.0
    assert lexical["lr"] == pytest.approx(t.learning_rate * 50.0)
    assert all(g["lr"] == t.learning_rate for g in groups if g is not lexical)


def test_the_weight_learns_where_word_overlap_predicts_clicks() -> None:
    # the "match" rule clicks products of the query's colour (and kind): the overlap predicts clicks
    train = make_hour_frame(BASE, 400, seed=11, rule="match")
    stopping = make_hour_frame(BASE, 32, seed=12)
    t = TINY_TRAINING.model_copy(update={"lexical_lr_scale": 20.0, "l2sp_strength": 0.0})
    seed_everything(t.seed)
    model, tokenizer = hybrid(seed=0)
    trainer = make_trainer(model, t, 40, new_head=True, device=torch.device("cpu"))
    assert "lexical_weight" not in trainer.anchors  # a new term is not pulled back to its init
    fit(trainer, FitData.from_frames(tokenizer, train, stopping, t.max_length), t, max_steps=40)
    assert model.lexical_weight.item() > 0.3, model.lexical_weight.item()
