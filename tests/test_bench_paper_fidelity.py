"""bench/paper_fidelity.py's plumbing: its arms are the training options, results are written after every run,
a rerun skips finished runs, and the arm to keep is chosen by the two label-free figures alone. (Its ``--tiny`` run
takes minutes on 2 cores, so the training itself is covered by tests/test_train_paper_options.py.)"""

from __future__ import annotations

import json

import pytest

from anatpaste.train import TrainConfig
from bench import paper_fidelity as bench


def test_every_arm_is_a_valid_training_config_and_shipped_is_todays_recipe():
    configs = {arm: TrainConfig(**options) for arm, options in bench.ARMS.items()}
    assert configs["shipped"] == TrainConfig()
    both = configs["original-all"]
    assert (both.paste_lungs, both.paste_halo, both.input_norm, both.jitter_originals) == (
        "anatpaste", True, "original", True)
    assert bench.ARMS["original-all"] == {**bench.ARMS["original-masks"], **bench.ARMS["original-input"]}
    args = bench.parse(["--tiny", "--seeds", "3", "4"])
    assert (args.size, args.steps, args.seeds, args.out.name) == (64, 4, [3], "paper_fidelity_tiny.json")
    args = bench.parse([])
    assert (args.size, args.steps, args.batch_size, args.precision, args.seeds, args.arms) == (
        128, 400, 32, "auto", [0], list(bench.ARMS))


def _fake_run(arm, seed, args, data, data_summary, films, device):
    # The label-free figure favours original-masks, the test AUCs favour original-input: the choice must follow
    # the former.
    syn = {"shipped": 0.80, "original-masks": 0.85, "original-input": 0.70, "original-all": 0.75}[arm]
    test = {"shipped": 0.80, "original-masks": 0.60, "original-input": 0.95, "original-all": 0.70}[arm]
    return {"arm": arm, "seed": seed, "synthetic_auc": syn, "file_synthetic_auc": syn, "wall_s": 1.0,
            "img_per_s": 10.0, **{f"{s}_test": {"auc": test} for s in bench.TEST_SITES}}


def test_results_are_written_after_every_run_resumed_and_chosen_by_the_label_free_figure(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    written = []
    ran = []
    monkeypatch.setattr(bench, "training_normals", lambda limit, size: ([0] * 5, {}))
    monkeypatch.setattr(bench, "test_films", lambda limit: {s: ([], []) for s in bench.TEST_SITES})
    monkeypatch.setattr(bench, "run_arm", lambda arm, seed, *a: ran.append((arm, seed)) or _fake_run(arm, seed, *a))
    lesion = {"shipped": 0.70, "original-masks": 0.75, "original-input": 0.60, "original-all": 0.65}

    def fake_lesions(runs, args, data):
        for r in runs:
            r.setdefault("lesion_auc", {"mean": lesion[r["arm"]]})

    monkeypatch.setattr(bench, "add_lesion_figures", fake_lesions)
    real_write = bench.write_results
    monkeypatch.setattr(bench, "write_results", lambda path, payload: (
        written.append(len(payload["runs"])), real_write(path, payload)))
    argv = ["--out", str(out), "--workdir", str(tmp_path / "w"), "--seeds", "0", "1"]

    assert bench.main([*argv, "--arms", "shipped", "original-input"]) == 0
    assert written == [1, 2, 3, 4], "a results file after every run"
    first = json.loads(out.read_text())
    assert first["choice"]["keep"] == "shipped" and first["choice"]["by"] == "synthetic_auc and lesion_auc"
    assert "never used to choose" in first["choice"]["rule"]

    ran.clear()
    assert bench.main(argv) == 0  # all four arms: the two finished ones are not run again
    assert sorted(ran) == sorted((a, s) for a in ("original-masks", "original-all") for s in (0, 1))
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 8 and result["choice"]["complete"] is True
    assert result["mean"]["original-input"]["zhanglab_test_auc"] == pytest.approx(0.95)
    assert result["choice"]["keep"] == "original-masks", "the label-free figures choose, not the test AUC"
    assert result["mean"]["original-masks"]["lesion_auc"] == pytest.approx(0.75)
    # The two label-free figures disagree: shipped stays.
    assert bench.choice({**result["mean"], "original-all": {**result["mean"]["original-all"], "lesion_auc": 0.9}},
                        complete=True)["keep"] == "shipped"
    assert {"machine", "commit", "command", "settings"} <= set(result)

    ran.clear()
    assert bench.main([*argv, "--steps", "10"]) == 0  # other settings: another experiment, nothing kept
    assert len(ran) == 8
