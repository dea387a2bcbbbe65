"""Scorers, metrics and the model file, on small synthetic inputs with known answers."""

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from anatpaste.errors import ModelFileError
from anatpaste.evaluate import detection_metrics, specificity_at_sensitivity
from anatpaste.model.file import dequantize_state, load_model, quantize_state, save_model
from anatpaste.score import GaussianScorer, HeatmapScorer


def test_gaussian_scorer_matches_a_numpy_mahalanobis():
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(0)) * torch.tensor([1, 2, 3, 1, 1, 5.0])
    g = GaussianScorer.fit(x)
    xn = torch.nn.functional.normalize(x, dim=1).double().numpy()
    lw = LedoitWolf().fit(xn)
    mu, prec = lw.location_, lw.precision_
    q = torch.randn(4, 6)
    d = torch.nn.functional.normalize(q, dim=1).double().numpy() - mu
    expected = np.sqrt(np.einsum("nd,de,ne->n", d, prec, d))
    assert np.allclose(g.score(q).numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("case", ["random", "dead channels", "identical"])
def test_gaussian_precision_is_scikit_learns_ledoit_wolf_even_when_singular(case):
    # An untrained network can give (nearly) the same embedding for every image: a singular covariance, which
    # must still give scikit-learn's pseudo-inverse, not an error.
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(12, 512, generator=g).abs()
    if case == "dead channels":
        emb[:, :509] = 0
    elif case == "identical":
        emb[:] = emb[0]
    ref = LedoitWolf().fit(GaussianScorer.normalise(emb).double().numpy()).precision_
    got = GaussianScorer.fit(emb).precision.double().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_gaussian_scores_outliers_higher():
    gen = torch.Generator().manual_seed(1)
    base = torch.zeros(16)
    base[0] = 1.0
    normals = base + 0.05 * torch.randn(400, 16, generator=gen)
    g = GaussianScorer.fit(normals)
    inlier = base + 0.05 * torch.randn(50, 16, generator=gen)
    outlier = torch.roll(base, 3) + 0.05 * torch.randn(50, 16, generator=gen)
    assert g.score(outlier).min() > g.score(inlier).max()


def test_heatmap_scorer_localises_a_local_change():
    gen = torch.Generator().manual_seed(2)
    grids = torch.randn(200, 12, 8, 8, generator=gen)
    h = HeatmapScorer.fit(grids, n_channels=12, generator=gen)
    probe = torch.randn(1, 12, 8, 8, generator=gen)
    probe[0, :, 2, 5] += 8.0
    d = h.distance_grid(probe)[0]
    assert d.argmax().item() == 2 * 8 + 5
    hm = h.heatmap(probe, (64, 64))
    assert hm.shape == (1, 64, 64)
    assert hm[0, 16:24, 40:48].mean() > 2 * hm[0].median()


def test_specificity_at_sensitivity_on_known_values():
    normal = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    abnormal = np.array([0.35, 0.6, 0.7, 0.8])
    # All 4 abnormals flagged needs threshold 0.35: normals 0.1, 0.2, 0.3 are cleared → 3/5.
    assert specificity_at_sensitivity(normal, abnormal, 0.99) == pytest.approx(0.6)
    # 75 % sensitivity needs threshold 0.6 → 5/5 normals cleared.
    assert specificity_at_sensitivity(normal, abnormal, 0.75) == pytest.approx(1.0)
    m = detection_metrics(normal, abnormal)
    assert m["auc"] == pytest.approx(18 / 20)
    assert set(m) >= {"auc", "ap", "spec_at_sens95", "spec_at_sens99"}


def test_int8_quantisation_round_trip_is_close():
    w = torch.randn(64, 32, 3, 3)
    state = {"w": w, "b": torch.randn(64), "n": torch.tensor(3)}
    back = dequantize_state(quantize_state(state))
    assert torch.equal(back["b"], state["b"]) and torch.equal(back["n"], state["n"])
    err = (back["w"] - w).abs().amax((1, 2, 3)) / w.abs().amax((1, 2, 3))
    assert err.max() < 1 / 127 + 1e-6


def test_model_file_rejects_garbage_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        load_model(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ModelFileError):
        load_model(foreign)
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "missing.pt")


def test_save_model_is_atomic_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "m.pt"
    payload = {"encoder": {}, "gaussian": {}, "heatmap": {}, "threshold": {"value": 1.0}, "preprocessing": {}}
    save_model(payload, target)
    assert load_model(target)["threshold"]["value"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
