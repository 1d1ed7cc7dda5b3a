"""The ranker learns, ranks, round-trips through MLflow; the training data is what it should be."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import CONFLICTING, DRIFT_HOUR, OLD_HOURS, UNVALIDATED_HOUR, inverted, make_settings, match
from sklearn.metrics import roc_auc_score

from incremental.data import lake as lk
from incremental.data import table
from incremental.hours import HOUR
from incremental.model import ranker as rk
from incremental.model import replay
from incremental.model.fit import batch_indices
from incremental.model.rebuild import rebuild
from incremental.model.update import TrainingError, train_hour
from incremental.registry import tracking


def test_tiny_model_learns(bootstrapped) -> None:
    settings, result = bootstrapped
    holdout = pd.read_parquet(result.holdout_path)
    model, tokenizer = rk.load_dir(result.candidate_dir)
    auc = roc_auc_score(holdout["clicked"], rk.score_frame(model, tokenizer, holdout))
    print(f"bootstrap holdout AUC {auc:.3f} ({len(holdout)} rows)")
    assert auc > 0.7
    # the update's own metrics are on its early-stopping rows, not on the gate's holdout
    assert "holdout_auc" not in result.metrics and result.metrics["stopping_rows"] > 0
    assert result.metrics["holdout_rows"] == len(holdout)
    assert result.parent_version is None and result.resumed_from_step is None
    # the saved config is a ranker with one output, never a regression head
    config = json.loads((result.candidate_dir / "config.json").read_text())
    assert config.get("problem_type") in (None, "") and config.get("num_labels", 1) == 1


def test_ranks_exact_match_above_unrelated(bootstrapped) -> None:
    _, result = bootstrapped
    model, tokenizer = rk.load_dir(result.candidate_dir)
    queries, exact, unrelated = [], [], []
    for colour, kind, other_colour, other_kind in [
        ("red", "shoes", "blue", "lamp"), ("white", "jacket", "green", "watch"), ("pink", "bag", "grey", "boots"),
        ("black", "chair", "brown", "shirt"), ("grey", "watch", "red", "jacket"), ("brown", "lamp", "white", "bag"),
    ]:
        queries.append(f"{colour} {kind}")
        exact.append(rk.product_text(f"nova {colour} {kind} classic", "nova", "x"))
        unrelated.append(rk.product_text(f"nova {other_colour} {other_kind} classic", "nova", "x"))
    high = rk.score(model, tokenizer, queries, exact)
    low = rk.score(model, tokenizer, queries, unrelated)
    print("exact", np.round(high, 3), "unrelated", np.round(low, 3))
    # The tiny model learns the colour rule for most pairs; which single pair ends up a near-tie
    # depends on the CPU's thread count (float sums in another order), so allow one.
    assert (high > low).sum() >= len(high) - 1, (high, low)
    assert float(np.mean(high - low)) > 0.3, (high, low)


def test_mlflow_roundtrip(bootstrapped, tmp_path) -> None:
    settings, result = bootstrapped
    tracking.configure(settings)
    frame = pd.read_parquet(result.holdout_path).head(50)
    loaded = mlflow.pyfunc.load_model(result.model_uri)
    served = np.asarray(loaded.predict(frame[["query", "title", "brand", "category"]]))
    model, tokenizer = rk.load_dir(result.candidate_dir)
    direct = rk.score_frame(model, tokenizer, frame)
    np.testing.assert_allclose(served, direct, atol=1e-6)
    assert ((served > 0) & (served < 1)).all()

    run = tracking.configure(settings).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["data_hash"] == result.data_hash
    assert run.data.tags["parent_version"] == "none" and run.data.tags["device"] == "cpu"
    assert run.data.params["training.learning_rate"] == str(settings.training.learning_rate)
    assert "train_loss" in run.data.metrics and "samples_per_s" in run.data.metrics
    lineage = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/lineage.json")
    assert [p["hour"] for p in lineage["partitions"]] == [h.isoformat() for h in OLD_HOURS]
    assert all(p["sha256"] == lk.partition(settings.lake, h).manifest["sha256"]
               for p, h in zip(lineage["partitions"], OLD_HOURS, strict=True))
    # the table version it read: recorded in the lineage and on the run, for `history` and time travel
    version = lk.partition(settings.lake, OLD_HOURS[0]).version
    assert lineage["table_version"] == version and {p["table_version"] for p in lineage["partitions"]} == {version}
    assert lineage["table"] == table.uri(settings.lake)
    assert run.data.tags["lineage.table_version"] == str(version)
    rebuilt = rebuild(settings, lineage, tmp_path / "rows")  # by time travel, checked against what it read
    assert [h.rows for h in rebuilt] == [p["rows"] for p in lineage["partitions"]]


def test_refuses_an_hour_that_is_not_validated(shared_home, lake) -> None:
    settings = make_settings(shared_home, lake, model_name="ranker-refuse")
    with pytest.raises(TrainingError, match="extracted, not validated"):
        train_hour(settings, lk.partition(lake, UNVALIDATED_HOUR))
    with pytest.raises(TrainingError, match="missing, not validated"):
        train_hour(settings, lk.partition(lake, DRIFT_HOUR + HOUR * 10))


def test_holdout_split_keeps_sessions_on_one_side(lake) -> None:
    frame = lk.read_partition(lk.partition(lake, OLD_HOURS[0])).to_pandas()
    mask = replay.holdout_mask(frame["session_id"], 0.2)
    assert 0.1 < mask.mean() < 0.3
    assert not set(frame.loc[mask, "session_id"]) & set(frame.loc[~mask, "session_id"])


def test_replay_sample_is_deterministic_sized_and_excludes_holdouts(lake) -> None:
    kwargs = dict(fresh_rows=420, fraction=0.3, replay_hours=48, holdout_fraction=0.2, seed=13)
    first, lineage = replay.sample(lake, DRIFT_HOUR, **kwargs)
    again, _ = replay.sample(lake, DRIFT_HOUR, **kwargs)
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == replay.replay_size(420, 0.3) == 180
    assert [p["hour"] for p in lineage["partitions"]] == [h.isoformat() for h in OLD_HOURS]
    assert sum(p["sampled"] for p in lineage["partitions"]) == len(first)
    assert not replay.holdout_mask(first["session_id"], 0.2).any()
    other, _ = replay.sample(lake, DRIFT_HOUR, **{**kwargs, "seed": 14})
    assert set(other["event_id"]) != set(first["event_id"])
    assert replay.sample(lake, DRIFT_HOUR, **{**kwargs, "fraction": 0.0})[0].empty


def test_adapt_replay_leaves_out_the_changed_slices_rows_from_before_the_drift(lake) -> None:
    kwargs = dict(fresh_rows=10_000, fraction=0.5, replay_hours=48, holdout_fraction=0.2, seed=13)
    everything, _ = replay.sample(lake, DRIFT_HOUR, **kwargs)
    changed = everything["category"].value_counts().index[0]
    stale = replay.Stale(frozenset([changed]), before=OLD_HOURS[2])
    kept, lineage = replay.sample(lake, DRIFT_HOUR, **kwargs, stale=(stale,))

    before = kept["event_ts"] < pd.Timestamp(OLD_HOURS[2])
    assert not (before & (kept["category"] == changed)).any()  # stale: left out
    assert (~before & (kept["category"] == changed)).any()  # since the drift began: replayed
    assert set(kept["category"]) == set(everything["category"])  # the other slices still hold
    left_out = ((everything["event_ts"] < pd.Timestamp(OLD_HOURS[2])) & (everything["category"] == changed)).sum()
    assert lineage["stale_rows_left_out"] == left_out > 0
    assert lineage["stale"] == [{"categories": [changed], "before": OLD_HOURS[2].isoformat()}]
    assert len(kept) == len(everything) - left_out  # every available row was wanted


def test_a_catch_up_window_leaves_out_stale_rows_and_is_judged_on_its_recent_hours(lake, tmp_path) -> None:  # noqa: ANN001
    from incremental.model.examples import load_hours

    settings = make_settings(tmp_path / "home", lake)
    hours = lk.partitions(lake, [*OLD_HOURS, DRIFT_HOUR])
    whole = load_hours(settings, hours, strict=False)
    everything, whole_holdout = pd.concat([whole.train, whole.stopping], ignore_index=True), whole.holdout
    changed = everything["category"].value_counts().index[0]
    stale = (replay.Stale(frozenset([changed]), before=DRIFT_HOUR),)
    loaded = load_hours(settings, hours, strict=False, stale=stale, holdout_from=OLD_HOURS[-1])
    train, holdout, parts = loaded.train, loaded.holdout, loaded.parts

    before = train["event_ts"] < pd.Timestamp(DRIFT_HOUR)
    assert not (before & (train["category"] == changed)).any()  # stale: not trained on
    assert (train["category"] == changed).any()  # its rows since the drift are
    assert set(train["category"]) == set(everything["category"])
    judged = holdout.column("event_ts").to_pandas()
    assert judged.min() >= pd.Timestamp(OLD_HOURS[-1]) and len(holdout) < len(whole_holdout)
    def stale_in(frame: pd.DataFrame) -> int:
        return int(((frame["event_ts"] < pd.Timestamp(DRIFT_HOUR)) & (frame["category"] == changed)).sum())

    assert sum(p["stale_rows"] for p in parts) == stale_in(everything) + stale_in(whole_holdout.to_pandas()) > 0


def test_batch_order_is_a_function_of_seed_and_step() -> None:
    steps = [batch_indices(100, 32, seed=5, step=s) for s in range(8)]
    assert all(len(b) == 32 for b in steps)
    # the first 100 positions are one permutation: every row once per epoch
    assert sorted(np.concatenate(steps)[:100].tolist()) == list(range(100))
    np.testing.assert_array_equal(batch_indices(100, 32, seed=5, step=6), steps[6])
    assert not np.array_equal(batch_indices(100, 32, seed=6, step=0), steps[0])


def test_drift_rules_conflict() -> None:
    for colour in CONFLICTING:
        assert match(True, True, colour) > match(False, True, colour)
        assert inverted(True, True, colour) < inverted(False, True, colour)


def test_training_early_stopping_and_holdout_sessions_are_disjoint(bootstrapped) -> None:
    """The gate compares on the holdout; early stopping chose the weights on other sessions; the
    rest trained: three disjoint sets of sessions, none empty."""
    from incremental.model.examples import training_set

    settings, _ = bootstrapped
    data = training_set(settings, lk.partitions(settings.lake, OLD_HOURS), "bootstrap")
    train, stopping = set(data.fresh["session_id"]), set(data.stopping["session_id"])
    holdout = set(data.holdout.column("session_id").to_pylist())
    assert train and stopping and holdout
    assert not train & stopping and not train & holdout and not stopping & holdout
    # the same split in every stage: the holdout is the one `replay.holdout_mask` draws
    assert all(replay.holdout_mask(sorted(holdout), settings.training.holdout_fraction))
    # these rules do not depend on the position: the curve estimated from the logs is about flat
    assert min(data.examination.probability) > 0.7, data.examination


def test_two_judges_of_one_candidate_at_once_both_read_a_complete_copy(bootstrapped, tmp_path) -> None:  # noqa: ANN001
    """Two runs of one hour evaluate the same candidate together: each downloads it, one rename
    publishes it, and neither ever reads a half-moved directory (issue 20, defect 5)."""
    from concurrent.futures import ThreadPoolExecutor

    from incremental.judge.evaluate import candidate_dir

    settings, result = bootstrapped
    settings = settings.model_copy(update={"home": tmp_path / "worker"})  # a worker with nothing cached

    def judge(_: int) -> str:
        folder = candidate_dir(settings, result.run_id, result.model_uri)
        rk.load_dir(folder)  # raised "no file named model.safetensors" when a second judge moved the copy
        return str(folder)

    with ThreadPoolExecutor(4) as pool:
        folders = set(pool.map(judge, range(4)))
    assert len(folders) == 1
    assert sorted(p.name for p in (tmp_path / "worker" / "candidates").iterdir()) == [f"run-{result.run_id}"]


def test_the_examination_curve_is_part_of_the_data_identity(lake, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """With position_bias pbm the curve (fitted on `propensity_hours` up to the update's hour, most of
    them outside its own hours) is part of what trains: another curve is another update, never a
    resumed checkpoint or a reused run of the old one."""
    from incremental.model import examples as training_data
    from incremental.model import propensity

    settings = make_settings(tmp_path / "home", lake).with_training(position_bias="pbm")
    hour = [lk.partition(lake, DRIFT_HOUR)]
    first = training_data.training_set(settings, hour, "hourly").data_hash
    flat = propensity.unbiased(1)
    monkeypatch.setattr(training_data, "examination_curve", lambda *_: flat)
    assert training_data.training_set(settings, hour, "hourly").data_hash != first
    # without the correction the identity is what it always was
    plain = make_settings(tmp_path / "home", lake)
    assert training_data.training_set(plain, hour, "hourly").data_hash == \
        training_data.training_set(plain.with_training(propensity_hours=3), hour, "hourly").data_hash


def test_bm25_in_the_label_reaches_training_rows_only_and_is_part_of_the_identity(lake, tmp_path) -> None:  # noqa: ANN001
    """`training.bm25_label_weight`: the rows that train carry a label between their click and BM25 on
    the click scale; early-stopping rows (and the gate's) keep the click; the fit is in the lineage,
    and another weight is another update."""
    from incremental.model import examples as training_data
    from incremental.model.fit import FitData
    from incremental.model.weak_labels import LABEL_COLUMN

    hour = [lk.partition(lake, DRIFT_HOUR)]
    plain = make_settings(tmp_path / "home", lake).with_training(bm25_label_weight=0.0)
    clicks = training_data.training_set(plain, hour, "hourly")
    assert LABEL_COLUMN not in clicks.rows and "weak_labels" not in clicks.lineage
    mixed = training_data.training_set(plain.with_training(bm25_label_weight=0.5), hour, "hourly")
    rows = mixed.rows
    assert len(rows) == len(clicks.rows) and len(mixed.replayed) == len(clicks.replayed) > 0
    half = rows[LABEL_COLUMN] - 0.5 * rows["clicked"]
    assert half.between(0, 0.5).all() and half.nunique() > 1  # 0.5 x P(click | BM25), not a constant
    assert abs(rows[LABEL_COLUMN].mean() - rows["clicked"].mean()) < 0.05  # the click scale
    weak = mixed.lineage["weak_labels"]
    assert weak["bm25_label_weight"] == 0.5 and weak["slope"] > 0  # the colour words: BM25 rises with clicks
    assert LABEL_COLUMN not in mixed.stopping
    tokenizer = rk.load_base("tiny", seed=0)[1]
    data = FitData.from_frames(tokenizer, rows, mixed.stopping, 32)
    np.testing.assert_allclose(data.train_labels.numpy(), rows[LABEL_COLUMN].to_numpy(), rtol=1e-6)
    assert set(np.unique(data.stopping_labels)) <= {0.0, 1.0}
    assert mixed.data_hash == clicks.data_hash  # the same rows: the weight is in the update's config digest
    from incremental.model.identity import update_identity

    def key(settings) -> str:  # noqa: ANN001
        return update_identity(settings, DRIFT_HOUR, DRIFT_HOUR, "hourly", 100, "1", mixed.data_hash).key

    assert key(plain) != key(plain.with_training(bm25_label_weight=0.5))
