"""The shipped models: they load safely, are small, score real radiographs and separate them better than chance.

The default is the general model (children + adults); the pediatric ZhangLab-only model ships beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from shared_data import SHARED_DATA, zhang_files

from anatpaste.data import find_images
from anatpaste.evaluate import detection_metrics
from anatpaste.io import read_radiograph
from anatpaste.model.shipped import DEFAULT_MODEL, ZHANGLAB_MODEL, resolve_model
from anatpaste.score import Detector


def test_shipped_models_are_small_and_load_with_the_safe_loader():
    for path in (DEFAULT_MODEL, ZHANGLAB_MODEL):
        assert path.stat().st_size < 20 * 2**20
        payload = torch.load(path, weights_only=True)
        assert payload["format"] == "anatpaste-model"
    general = torch.load(DEFAULT_MODEL, weights_only=True)["training"]["data"]
    assert general["n_per_source"] == [1349, 184], "ZhangLab train + val normals, NIH train normals"
    assert general["balance_sources"] is True
    assert not any("lungmasks" in f for f in general["folders"]), "Montgomery and Shenzhen stay unseen"
    pediatric = torch.load(ZHANGLAB_MODEL, weights_only=True)["training"]["data"]
    assert pediatric["n_images"] == 1349 and all("zhanglab" in f for f in pediatric["folders"])


def test_a_shipped_model_is_found_by_its_name():
    assert resolve_model(None) == DEFAULT_MODEL
    assert resolve_model("zhanglab_cpu") == ZHANGLAB_MODEL
    assert Detector.load("zhanglab_cpu").version.startswith("zhanglab_cpu-")
    assert resolve_model("no_such_model") == Path("no_such_model"), "not shipped: an ordinary path"


def test_default_model_separates_real_pneumonia_from_normal_better_than_chance():
    # 60 + 60 images of the ZhangLab test split; the full-split figure is in the README (bench results).
    det = Detector.load()
    normal = det.score_many([read_radiograph(p).pixels for p in zhang_files("test", "NORMAL")[::4][:60]])
    abnormal = det.score_many([read_radiograph(p).pixels for p in zhang_files("test", "PNEUMONIA")[::6][:60]])
    assert detection_metrics(normal, abnormal)["auc"] > 0.65


def test_default_model_separates_adult_pneumonia_at_a_hospital_whose_test_films_it_never_saw():
    # NIH test split (60 + 60 of 68 / 270); the model trained on NIH *train* normals only.
    det = Detector.load()
    nih = SHARED_DATA / "nih" / "test"
    normal = det.score_many([read_radiograph(p).pixels for p in find_images(nih / "NORMAL")[:60]])
    abnormal = det.score_many([read_radiograph(p).pixels for p in find_images(nih / "PNEUMONIA")[::4][:60]])
    assert detection_metrics(normal, abnormal)["auc"] > 0.65
    assert (normal <= det.threshold).mean() > 0.5, "most adult normals are below the stored threshold"


def test_default_model_scores_a_2k_dicom_with_maps_in_its_geometry():
    rg = read_radiograph(SHARED_DATA / "dicom" / "RG1_UNCR.dcm")
    res = Detector.load().score(rg.pixels)
    assert res.heatmap.shape == rg.pixels.shape == res.lung_mask.shape
    assert np.isfinite(res.heatmap).all() and res.score > 0
    again = Detector.load().score(rg.pixels)
    assert again.score == res.score and np.array_equal(again.heatmap, res.heatmap)
