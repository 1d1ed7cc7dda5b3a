"""The hourly update: resume after a kill, and anti-forgetting under conflicting drift."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from conftest import DRIFT_HOUR, OLD_HOURS, TINY_TRAINING, make_hour_frame, make_settings
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from incremental.data import lake as lk
from incremental.model import ranker as rk
from incremental.model.update import train_hour
from incremental.registry import tracking

REPO = Path(__file__).resolve().parents[2]
FAULTS_DIR = REPO / "tests" / "faults"  # sitecustomize.py: the test-only crash, loaded by the child
RESUME_TRAINING = TINY_TRAINING.model_copy(update={"max_steps": 60, "checkpoint_every": 20, "eval_every": 30})

# One process as the scheduler would start it: train the hour, print the result as JSON.
CHILD = """
import json, sys
from pathlib import Path
repo, here, home, lake, training = json.loads(sys.argv[1])
sys.path[:0] = [repo, here]
from conftest import OLD_HOURS, TINY_TRAINING, make_settings
from incremental.data.lake import partition
from incremental.model.update import train_hour
settings = make_settings(Path(home), Path(lake), model_name="ranker-resume",
                         training=TINY_TRAINING.model_copy(update=training))
result = train_hour(settings, partition(settings.lake, OLD_HOURS[1]))
print(json.dumps({"run_id": result.run_id, "resumed_from_step": result.resumed_from_step}))
"""


def _train_in_child(home: Path, lake: Path, kill_at: int | None) -> subprocess.CompletedProcess[str]:
    args = json.dumps([str(REPO), str(Path(__file__).parent), str(home), str(lake), RESUME_TRAINING.model_dump()])
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCREMENTAL_TEST_FAULT_")}
    env.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    if kill_at is not None:  # killed right after the checkpoint at that step (tests/faults/sitecustomize.py)
        env.update(PYTHONPATH=f"{FAULTS_DIR}{os.pathsep}{REPO}", INCREMENTAL_TEST_FAULT_KILL_AT_STEP=str(kill_at))
    return subprocess.run([sys.executable, "-c", CHILD, args], env=env, capture_output=True, text=True, timeout=600)


def test_killed_update_resumes_and_matches_an_uninterrupted_run(tmp_path: Path, lake: Path) -> None:
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"

    killed = _train_in_child(interrupted, lake, kill_at=20)
    assert killed.returncode == -9, killed.stderr[-3000:]
    checkpoints = list((interrupted / "checkpoints").glob("*/last.pt"))
    assert len(checkpoints) == 1
    checkpoint = torch.load(checkpoints[0], weights_only=True)  # nothing but tensors and plain types
    assert checkpoint["state"]["step"] == 20

    resumed = _train_in_child(interrupted, lake, kill_at=None)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resumed_out = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert resumed_out["resumed_from_step"] == 20
    assert resumed_out["run_id"] == checkpoint["run_id"]  # the same MLflow run continues
    assert not checkpoints[0].exists()  # removed once the model is logged

    settings = make_settings(clean, lake, model_name="ranker-resume", training=RESUME_TRAINING)
    uninterrupted = train_hour(settings, lk.partition(lake, OLD_HOURS[1]))
    assert uninterrupted.resumed_from_step is None

    resumed_dir = next((interrupted / "candidates").iterdir())
    a = load_file(resumed_dir / "model.safetensors")
    b = load_file(uninterrupted.candidate_dir / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"largest weight difference resumed vs uninterrupted: {worst:.2e}")
    assert worst < 1e-5
    # and the run's history is whole: one loss per step, 1..60
    client = tracking.configure(make_settings(interrupted, lake, model_name="ranker-resume"))
    steps = sorted({m.step for m in client.get_metric_history(resumed_out["run_id"], "train_loss")})
    assert steps == list(range(1, 61))
    assert client.get_run(resumed_out["run_id"]).info.status == "FINISHED"


def _old_and_new_auc(candidate_dir: Path, old: pd.DataFrame, new: pd.DataFrame) -> tuple[float, float]:
    model, tokenizer = rk.load_dir(candidate_dir)
    return (roc_auc_score(old["clicked"], rk.score_frame(model, tokenizer, old)),
            roc_auc_score(new["clicked"], rk.score_frame(model, tokenizer, new)))


def test_replay_and_l2sp_reduce_forgetting_under_conflicting_drift(bootstrapped, lake: Path) -> None:
    boot_settings, boot = bootstrapped
    settings = make_settings(boot_settings.home, lake, model_name="ranker-forgetting")
    tracking.configure(settings)
    version = mlflow.register_model(boot.model_uri, settings.model_name).version
    tracking.configure(settings).set_registered_model_alias(settings.model_name, tracking.CHAMPION_ALIAS, version)

    # fresh samples of both rules (not the training rows): old = the rule before the drift
    old = make_hour_frame(DRIFT_HOUR, 1000, seed=999, rule="match")
    new = make_hour_frame(DRIFT_HOUR, 1000, seed=998, rule="inverted")
    before_old, _ = _old_and_new_auc(tracking.version_model_dir(settings, version), old, new)

    naive = train_hour(settings, lk.partition(settings.lake, DRIFT_HOUR), overrides={"replay_fraction": 0.0, "l2sp_strength": 0.0,
                                                         "learning_rate": 3e-3})
    default = train_hour(settings, lk.partition(settings.lake, DRIFT_HOUR))
    assert naive.parent_version == default.parent_version == str(version)
    client = tracking.configure(settings)
    replay_rows = {r.run_id: int(client.get_run(r.run_id).data.tags["lineage.replay_rows"]) for r in (naive, default)}
    assert replay_rows[naive.run_id] == 0 and replay_rows[default.run_id] > 0
    naive_old, naive_new = _old_and_new_auc(naive.candidate_dir, old, new)
    default_old, default_new = _old_and_new_auc(default.candidate_dir, old, new)
    forgetting_naive, forgetting_default = before_old - naive_old, before_old - default_old
    print(f"old-rule AUC: champion {before_old:.3f}, naive {naive_old:.3f} (forgot {forgetting_naive:.3f}), "
          f"replay+L2-SP {default_old:.3f} (forgot {forgetting_default:.3f}); "
          f"new-rule AUC naive {naive_new:.3f}, replay+L2-SP {default_new:.3f}")
    assert before_old > 0.7  # there was something to forget
    assert forgetting_naive > 0.15  # the drift really conflicts
    assert forgetting_naive - forgetting_default > 0.08
    assert np.isfinite([naive_new, default_new]).all()
