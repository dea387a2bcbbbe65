"""The heatmap is scaled per location on normals, zero outside a dilated lung mask, and a normal film like the
fitting ones shows (almost) nothing above the display threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shared_data import SHARED_DATA

from anatpaste.adapt import calibrate
from anatpaste.data import find_images, load_image_set
from anatpaste.io import read_radiograph
from anatpaste.model.file import load_model
from anatpaste.model.shipped import DEFAULT_MODEL
from anatpaste.score import Detector
from anatpaste.score.heat_calibration import LUNG_EDGE, LUNG_MARGIN, lung_window, windowed_maps

NIH = SHARED_DATA / "nih" / "train" / "NORMAL"


@pytest.fixture(scope="module")
def calibrated():
    data = load_image_set(find_images(NIH)[:24], 128, progress=False)
    payload = calibrate(load_model(DEFAULT_MODEL), data)
    return Detector(payload, version="test-calibrated"), data


def test_lung_window_is_one_in_the_dilated_mask_and_zero_beyond_its_edge():
    mask = np.zeros((512, 400), bool)
    mask[200:300, 150:250] = True
    win = lung_window(mask).numpy()
    assert win.shape == mask.shape and win.min() >= 0 and win.max() <= 1
    side = min(mask.shape)
    assert (win[mask] == 1).all()
    inner = round(LUNG_MARGIN * side) - 4  # well inside the margin: still fully shown
    assert win[250, 150 - inner] == pytest.approx(1, abs=0.02)
    beyond = round((LUNG_MARGIN + LUNG_EDGE) * side) + 6
    assert win[250, 150 - beyond] == 0 and win[0, 0] == 0
    assert lung_window(mask, (128, 100)).shape == (128, 100)


def test_calibration_stores_a_per_location_scale_and_a_display_threshold(calibrated):
    det, data = calibrated
    heat = det.payload["heatmap"]
    assert tuple(heat["location_scale"].shape) == tuple(heat["grid"]) and (heat["location_scale"] > 0).all()
    assert "lung window" in heat["display_how"]
    assert det.heat_display_max > 0


def test_a_calibration_normal_rarely_shows_colour_and_maps_are_zero_outside_the_window(calibrated):
    det, data = calibrated
    from anatpaste.score.features import extract

    _, grids = extract(det.encoder, data.images, det.mean, det.std, with_grid=True)
    peaks = windowed_maps(det.heat, det.heat.distance_grid(grids), data.lungs).flatten(1).amax(1)
    # In-sample maps of the calibration normals: at most 1 of 24 above a 99 % threshold set cross-fitted.
    assert int((peaks > det.heat_display_max).sum()) <= 1
    rg = read_radiograph(find_images(SHARED_DATA / "nih" / "test" / "PNEUMONIA")[0])
    res = det.score(rg.pixels)
    win = lung_window(res.lung_mask).numpy()
    assert (res.heatmap[win == 0] == 0).all() and (win == 0).any()
    assert res.heatmap[res.lung_mask].mean() > 0


def test_a_trained_model_file_carries_the_heat_calibration(tiny_model):
    heat = load_model(tiny_model)["heatmap"]
    assert tuple(heat["location_scale"].shape) == tuple(heat["grid"])
    assert torch.isfinite(torch.as_tensor(heat["display_max"]))
