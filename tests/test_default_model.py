"""The shipped model: it loads safely, is small, scores real radiographs and separates them better than chance."""

from __future__ import annotations

import numpy as np
import torch
from shared_data import SHARED_DATA, zhang_files

from anatpaste.detector import DEFAULT_MODEL, Detector
from anatpaste.io import read_radiograph
from anatpaste.metrics import detection_metrics


def test_default_model_is_small_and_loads_with_the_safe_loader():
    assert DEFAULT_MODEL.stat().st_size < 20 * 2**20
    payload = torch.load(DEFAULT_MODEL, weights_only=True)
    assert payload["format"] == "anatpaste-model"
    assert payload["training"]["data"]["n_images"] == 1349, "trained on ZhangLab train + val normals"


def test_default_model_separates_real_pneumonia_from_normal_better_than_chance():
    # 60 + 60 images of the ZhangLab test split; the full-split figure is in the README (bench results).
    det = Detector.load()
    normal = det.score_many([read_radiograph(p).pixels for p in zhang_files("test", "NORMAL")[::4][:60]])
    abnormal = det.score_many([read_radiograph(p).pixels for p in zhang_files("test", "PNEUMONIA")[::6][:60]])
    assert detection_metrics(normal, abnormal)["auc"] > 0.65


def test_default_model_scores_a_2k_dicom_with_maps_in_its_geometry():
    rg = read_radiograph(SHARED_DATA / "dicom" / "RG1_UNCR.dcm")
    res = Detector.load().score(rg.pixels)
    assert res.heatmap.shape == rg.pixels.shape == res.lung_mask.shape
    assert np.isfinite(res.heatmap).all() and res.score > 0
    again = Detector.load().score(rg.pixels)
    assert again.score == res.score and np.array_equal(again.heatmap, res.heatmap)
