"""The image score of a model trained on several sources: one Gaussian per source, smallest scaled distance
(real films: ZhangLab children and NIH adults, embedded by the shipped encoder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shared_data import SHARED_DATA, zhang_files

from anatpaste.data import ImageSet, load_image_set
from anatpaste.model.file import load_model
from anatpaste.model.shipped import DEFAULT_MODEL
from anatpaste.score import Detector, GaussianScorer
from anatpaste.score.crossfit import crossfit_scores
from anatpaste.score.features import extract
from anatpaste.score.source_gaussians import SourceGaussians, fit_image_scorer, image_scorer
from anatpaste.score.source_quantile import MIN_SOURCE_NORMALS


@pytest.fixture(scope="module")
def shipped() -> Detector:
    return Detector.load(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def two_sources(shipped):
    nih = sorted((SHARED_DATA / "nih" / "test" / "NORMAL").glob("*.png"))[:30]
    assert len(nih) == 30, "expected NIH test normals (CI provides ../shared/data)"
    children = zhang_files("test", "NORMAL", n=40)
    sets = [load_image_set(files, shipped.image_size, progress=False) for files in (children, nih)]
    data = ImageSet.concat(sets)
    return extract(shipped.encoder, data.images, shipped.mean, shipped.std)[0], data.source


def test_each_source_gets_its_gaussian_and_a_film_its_smallest_scaled_distance(two_sources):
    emb, source = two_sources
    g = fit_image_scorer(emb, source)
    assert isinstance(g, SourceGaussians) and len(g.parts) == 2
    for k, (part, scale) in enumerate(zip(g.parts, g.scales, strict=True)):
        own = emb[source == k]
        assert torch.allclose(part.mean, GaussianScorer.fit(own).mean)
        assert scale == pytest.approx(float(np.median(crossfit_scores(own, folds=5))))
    expect = torch.stack([p.score(emb) / s for p, s in zip(g.parts, g.scales, strict=True)]).min(0).values
    assert torch.allclose(g.score(emb), expect)
    back = image_scorer(g.state_dict())
    assert torch.allclose(back.score(emb), g.score(emb))


def test_a_new_film_is_nearest_to_its_own_sources_gaussian(two_sources):
    """Fitted on part of each source, the films left out mostly take their score from their own source's
    Gaussian: children's films from the children's, adults' from the adults'."""
    emb, source = two_sources
    fit = torch.cat([torch.arange(0, 28), torch.arange(40, 60)])
    new = torch.cat([torch.arange(28, 40), torch.arange(60, 70)])
    g = SourceGaussians.fit(emb[fit], source[fit])
    scaled = torch.stack([p.score(emb[new]) / s for p, s in zip(g.parts, g.scales, strict=True)])
    nearest = scaled.argmin(0)
    assert float((nearest == source[new]).float().mean()) >= 0.8, (nearest, source[new])


def test_one_source_or_a_source_too_small_keeps_one_gaussian(two_sources):
    emb, source = two_sources
    assert isinstance(fit_image_scorer(emb, None), GaussianScorer)
    assert isinstance(fit_image_scorer(emb, torch.zeros_like(source)), GaussianScorer)
    small = torch.cat([torch.zeros(len(source) - MIN_SOURCE_NORMALS + 1), torch.ones(MIN_SOURCE_NORMALS - 1)]).long()
    assert isinstance(fit_image_scorer(emb, small), GaussianScorer)
    with pytest.raises(ValueError, match=str(MIN_SOURCE_NORMALS)):
        SourceGaussians.fit(emb, small)


def test_the_shipped_model_scores_with_its_sources_gaussians(shipped):
    payload = load_model(DEFAULT_MODEL)
    assert "per_source" in payload["gaussian"] and isinstance(shipped.gaussian, SourceGaussians)
    assert "per training source" in payload["image_scorer"]
    assert [b["source"] for b in payload["threshold"]["by_source"]] == [0, 1]
    film = load_image_set(zhang_files("test", "NORMAL", n=1), shipped.image_size, progress=False).images
    emb = extract(shipped.encoder, film, shipped.mean, shipped.std)[0]
    g = shipped.gaussian
    direct = min(float(p.score(emb)[0]) / s for p, s in zip(g.parts, g.scales, strict=True))
    assert float(shipped.score_grids(film)[0]) == pytest.approx(direct, rel=1e-5)


def test_a_two_source_training_run_exports_per_source_gaussians(tmp_path):
    from anatpaste.train import TrainConfig, train

    children = load_image_set(zhang_files("train", "NORMAL")[200:214], 64, progress=False)
    adults = load_image_set(sorted((SHARED_DATA / "nih" / "train" / "NORMAL").glob("*.png"))[:14], 64, progress=False)
    data = ImageSet.concat([children, adults])
    cfg = TrainConfig(image_size=64, steps=2, batch_size=4, seed=0, eval_every=0, checkpoint_every=0,
                      holdout_fraction=0.25, balance_sources=True)
    train(cfg, data, tmp_path / "two.pt", device="cpu")
    payload = load_model(tmp_path / "two.pt")
    assert "per_source" in payload["gaussian"] and len(payload["gaussian"]["per_source"]) == 2
    assert "per training source" in payload["image_scorer"]
    det = Detector.load(tmp_path / "two.pt")
    scores = det.score_grids(data.images)
    assert np.all(np.isfinite(scores)) and float(np.median(scores)) < 1.5  # scaled: a training normal is about 1
    # With a single source the same run keeps one Gaussian.
    train(cfg, children, tmp_path / "one.pt", device="cpu")
    assert set(load_model(tmp_path / "one.pt")["gaussian"]) == {"mean", "precision"}
