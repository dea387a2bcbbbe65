"""The picture's own statistics (anatpaste.gate.picture) and the rules they drive (anatpaste.gate.familiarity).

Real files only: real films of ../shared/data, edited copies of them (padded, cut, turned), scikit-image's
photographs and pydicom's CT / NM pixels with their header ignored, on the shipped model files.
"""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from shared_data import SHARED_DATA, zhang_files

from anatpaste.errors import NOT_A_CHEST_REASONS, NotAChestRadiographError
from anatpaste.gate import familiarity
from anatpaste.gate.content import WARNINGS, check_content
from anatpaste.gate.familiarity import check_turned, model_checks, score_gated
from anatpaste.gate.picture import (
    KEY,
    MIN_NORMALS,
    Familiarity,
    InputStatistics,
    film_area,
    fit_input_statistics,
    layout_vector,
    statistics_problem,
    with_input_statistics,
)
from anatpaste.image import as_unit_image
from anatpaste.io import read_radiograph
from anatpaste.model.file import load_model, save_model
from anatpaste.model.shipped import DEFAULT_MODEL, ZHANGLAB_MODEL
from anatpaste.preprocess import model_grid
from anatpaste.report.codes import FLAG_CODES

NEW_FLAGS = ("unusual_layout", "unusual_texture", "partial_film")
NIH_NORMAL = SHARED_DATA / "nih" / "test" / "NORMAL" / "00001280_004.png"
PHOTOGRAPHS = ("camera", "coins", "astronaut", "retina")  # grey photographs whose dark parts pass for lungs
HEADERLESS = ("CT_small.dcm", "693_J2KI.dcm", "JPEG2000.dcm")  # CT / NM pixels with lung-like dark regions


@pytest.fixture(scope="module")
def detector():
    from anatpaste.score.detector import Detector

    return Detector.load()


def _real_films() -> list[Path]:
    """Real films of every site, none a training normal of the shipped model."""
    files = (sorted((SHARED_DATA / "lungmasks" / "images").glob("*.png"))[3::30]
             + sorted((SHARED_DATA / "nih" / "test").rglob("*.png"))[5::60]
             + zhang_files("test", "PNEUMONIA")[2::80] + zhang_files("test", "NORMAL")[1::60])
    assert len(files) >= 20, files
    return files


def _grid(pixels: np.ndarray, size: int = 128) -> np.ndarray:
    return model_grid(as_unit_image(pixels), size)


def _padded(pixels: np.ndarray) -> np.ndarray:
    """Black bars on three sides, as Montgomery's films have them: a third more height, a quarter more width."""
    h, w = pixels.shape
    out = np.zeros((h + h // 3, w + w // 2), dtype=np.float32)
    out[:h, w // 4 : w // 4 + w] = pixels
    return out


def _gated(det, pixels: np.ndarray, name: str):
    return score_gated(det, np.ascontiguousarray(pixels, dtype=np.float32), name, maps=False)


def _skimage_grey(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)().astype(np.float32)
    img = img[..., :3].mean(axis=-1) if img.ndim == 3 else img
    return (img - img.min()) / np.ptp(img)


def _headerless(name: str) -> np.ndarray:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing from the installed pydicom"
    ds = pydicom.dcmread(path, force=True)
    arr = np.asarray(ds.pixel_array, dtype=np.float32)
    return arr[0] if arr.ndim == 3 else arr


# --- the statistics themselves ---------------------------------------------------------------------


def test_film_area_drops_the_padding_and_keeps_the_film() -> None:
    pixels = read_radiograph(NIH_NORMAL).pixels
    r0, r1, c0, c1 = film_area(_grid(pixels, 256))
    assert r1 - r0 > 230 and c1 - c0 > 230, (r0, r1, c0, c1)  # a film without padding keeps (almost) all of it
    # padded, the film lies in rows 0:192 and columns 43:213 of the 256-px grid: its own area, moved there
    (h, w), (ph, pw) = pixels.shape, _padded(pixels).shape
    y, x0, x = 256 * h / ph / 256, 256 * (w // 4) / pw, 256 * w / pw / 256
    expected = (r0 * y, r1 * y, x0 + c0 * x, x0 + c1 * x)
    found = film_area(_grid(_padded(pixels), 256))
    assert np.allclose(found, expected, atol=3), (found, expected)
    assert film_area(np.zeros((128, 128), dtype=np.uint8)) == (0, 128, 0, 128)  # nothing left: the whole grid


def test_a_padded_film_has_the_layout_of_the_film() -> None:
    pixels = read_radiograph(NIH_NORMAL).pixels
    a, b = layout_vector(_grid(pixels)), layout_vector(_grid(_padded(pixels)))
    assert np.corrcoef(a, b)[0, 1] > 0.97
    assert np.corrcoef(a, layout_vector(_grid(pixels[::-1])))[0, 1] < 0.5  # upside down: another layout


def test_a_gaussian_is_unit_free_and_survives_its_state_dict() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    fam = Familiarity.fit(x)
    assert len(fam.crossfit) == 200 and np.all(np.diff(fam.crossfit) >= 0)
    far = fam.units(fam.distance(x[:3] + 10.0))
    scaled = Familiarity.fit(3.0 * x)
    assert np.allclose(scaled.units(scaled.distance(3.0 * (x[:3] + 10.0))), far, rtol=1e-3)
    assert np.all(far > 5)  # far from the normals in their own spreads
    back = Familiarity.from_state_dict(fam.state_dict())
    assert np.allclose(back.units(back.distance(x[:5])), fam.units(fam.distance(x[:5])), atol=1e-3)
    with pytest.raises(ValueError, match="need"):
        Familiarity.fit(x[: MIN_NORMALS - 1])


@pytest.fixture(scope="module")
def few_normals():
    from anatpaste.data import load_image_set

    return load_image_set(zhang_files("train", "NORMAL")[::25][:MIN_NORMALS + 8], 128, progress=False)


def test_fitted_statistics_travel_in_a_model_file(few_normals, tmp_path: Path) -> None:
    payload = load_model(ZHANGLAB_MODEL)
    out = with_input_statistics(payload, few_normals)
    assert KEY not in payload or payload[KEY] is not out[KEY]  # the input payload is not changed
    assert out[KEY]["n_normals"] == len(few_normals)
    save_model(out, tmp_path / "m.pt")  # loads with weights_only=True, or save_model refuses to publish it
    stats = InputStatistics.of(load_model(tmp_path / "m.pt"))
    assert stats is not None
    again = InputStatistics.of(out)
    grid = few_normals.images[0, 0].numpy()
    assert stats.layout_units(grid)["as is"] == pytest.approx(again.layout_units(grid)["as is"], abs=1e-3)


def test_fitting_refuses_images_at_another_size_and_too_few_normals(few_normals) -> None:
    from anatpaste.data import load_image_set

    payload = load_model(ZHANGLAB_MODEL)
    with pytest.raises(ValueError, match="px but the model takes 128"):
        fit_input_statistics(payload, load_image_set(zhang_files("train", "NORMAL", n=4), 64, progress=False))
    with pytest.raises(ValueError, match="need"):
        fit_input_statistics(payload, few_normals.subset(list(range(MIN_NORMALS - 1))))


def test_too_few_normals_keep_the_statistics_of_an_unchanged_encoder_and_drop_those_of_a_changed_one(
        few_normals, caplog) -> None:
    fitted = with_input_statistics(load_model(ZHANGLAB_MODEL), few_normals)
    too_few = few_normals.subset(list(range(MIN_NORMALS - 1)))
    with caplog.at_level(logging.WARNING, logger="anatpaste.gate.picture"):
        kept = with_input_statistics(fitted, too_few, encoder_changed=False)  # calibrate: same encoder
        dropped = with_input_statistics(fitted, too_few)  # a fine-tune: the old statistics are stale
    assert kept[KEY] is fitted[KEY] and KEY not in dropped and KEY in fitted
    assert [r.getMessage().split(": ")[-1] for r in caplog.records] == [
        "the model file keeps its earlier ones",
        "the model file holds none, and the gate's layout and texture checks will not run"]


@pytest.mark.parametrize("model", [DEFAULT_MODEL, ZHANGLAB_MODEL])
def test_the_shipped_model_files_hold_statistics_of_their_training_normals(model: Path) -> None:
    payload = load_model(model)
    assert InputStatistics.of(payload) is not None, model
    assert payload[KEY]["n_normals"] == payload["training"]["data"]["n_images"]


# --- the rules on real films and edited copies ---------------------------------------------------------


def test_real_films_of_every_site_get_none_of_the_new_flags(detector) -> None:
    for path in _real_films():
        _, gate = _gated(detector, read_radiograph(path).pixels, path.name)
        assert not set(NEW_FLAGS) & set(gate.flags), (path, gate.flags, gate.measures)
        assert gate.measures["layout"] <= familiarity.LAYOUT_SPREADS


def test_padding_a_real_film_changes_nothing_the_gate_says(detector) -> None:
    for path in _real_films()[::4]:
        pixels = read_radiograph(path).pixels
        _, gate = _gated(detector, _padded(pixels), path.name)
        _, plain = _gated(detector, pixels, path.name)
        assert not set(NEW_FLAGS) & set(gate.flags), (path, gate.measures)
        assert abs(gate.measures["layout"] - plain.measures["layout"]) < 2.0, (path, gate.measures, plain.measures)


@pytest.mark.parametrize("name", PHOTOGRAPHS)
def test_grey_photographs_with_lung_like_dark_parts_are_flagged(name: str, detector) -> None:
    pixels = _skimage_grey(name)
    assert check_content(pixels, name).flags == []  # the content gate alone lets them through
    _, gate = _gated(detector, pixels, name)
    assert {"unusual_layout", "unusual_texture"} & set(gate.flags), (name, gate.flags, gate.measures)


@pytest.mark.parametrize("name", HEADERLESS)
def test_ct_and_nm_pixels_without_their_header_are_flagged(name: str, detector) -> None:
    _, gate = _gated(detector, _headerless(name), name)
    assert {"unusual_layout", "unusual_texture", "partial_film"} & set(gate.flags), (name, gate.flags, gate.measures)


def test_the_texture_rule_alone_catches_a_ct_slice_laid_out_like_a_film(detector) -> None:
    _, gate = _gated(detector, _headerless("693_J2KI.dcm"), "693_J2KI")
    assert gate.measures["layout"] <= familiarity.LAYOUT_SPREADS, gate.measures
    assert gate.measures["texture"] > familiarity.TEXTURE_SPREADS + 5, gate.measures
    assert gate.flags == ["unusual_texture"]


def test_the_layout_rule_alone_catches_a_ct_slice_with_a_film_like_texture(detector) -> None:
    _, gate = _gated(detector, _headerless("CT_small.dcm"), "CT_small")
    assert gate.measures["texture"] <= familiarity.TEXTURE_SPREADS, gate.measures
    assert gate.measures["layout"] > familiarity.LAYOUT_SPREADS + 1, gate.measures
    assert gate.flags == ["unusual_layout"]


def test_the_texture_rule_is_not_measured_without_lung_fields(detector) -> None:
    _, gate = _gated(detector, _skimage_grey("moon"), "moon")
    assert "no_lungs" in gate.flags and "texture" not in gate.measures and "unusual_texture" not in gate.flags


def test_a_strip_cut_out_of_a_real_film_is_flagged_partial(detector) -> None:
    for path in _real_films()[::3]:
        pixels = read_radiograph(path).pixels
        _, gate = _gated(detector, pixels[: pixels.shape[0] // 4], f"{path.name}:top")
        assert "partial_film" in gate.flags, (path, gate.flags)
        _, gate = _gated(detector, pixels[:, : pixels.shape[1] // 3], f"{path.name}:left")
        assert "partial_film" in gate.flags, (path, gate.flags)


def test_the_top_of_a_film_stretched_to_a_square_is_caught_by_the_statistics(detector) -> None:
    """The same crop without its tell-tale shape: the layout or the texture see more than half of them (15 of
    these 24 when written), as unlike the normals (a flag) or as a film the wrong way up (refused)."""
    films = _real_films()
    caught = 0
    for path in films:
        top = read_radiograph(path).pixels[: read_radiograph(path).pixels.shape[0] // 4]
        square = np.asarray(Image.fromarray(top).resize((top.shape[1], top.shape[1]), Image.BILINEAR))
        try:
            _, gate = _gated(detector, square, f"{path.name}:top")
        except NotAChestRadiographError as err:
            caught += err.reason == "orientation"
            continue
        caught += bool({"unusual_layout", "unusual_texture"} & set(gate.flags))
    assert caught > len(films) // 2, (caught, len(films))


@pytest.mark.parametrize(("edit", "detail"), [("upside_down", "upside down"), ("turned_180", "upside down"),
                                              ("turned_90", "turned by 90 degrees"),
                                              ("turned_270", "turned by 90 degrees")])
def test_turned_copies_of_real_films_of_every_site_are_refused(edit: str, detail: str, detector) -> None:
    turn = {"upside_down": lambda a: a[::-1], "turned_180": lambda a: a[::-1, ::-1], "turned_90": np.rot90,
            "turned_270": lambda a: np.rot90(a, 3)}[edit]
    films = _real_films()
    refused: dict[Path, NotAChestRadiographError] = {}
    for path in films:
        try:
            _gated(detector, turn(read_radiograph(path).pixels), f"{path.name}:{edit}")
        except NotAChestRadiographError as err:
            refused[path] = err
    assert len(refused) >= len(films) - 1, (edit, sorted(set(films) - set(refused)))
    for path, err in refused.items():
        assert (err.reason, err.detail) == ("orientation", detail), (path, str(err))
        assert "turn it upright" in str(err)


def test_a_turned_film_is_refused_only_if_the_model_agrees(detector) -> None:
    pixels = np.ascontiguousarray(read_radiograph(NIH_NORMAL).pixels[::-1])
    gate = check_content(pixels, "upside down")
    stats = InputStatistics.of(detector.payload)
    grid = _grid(gate.pixels)
    score = detector.score(gate.pixels, maps=False).score
    with pytest.raises(NotAChestRadiographError, match="upside down"):
        check_turned(detector, stats, gate, grid, score, "upside down")
    # a score that turning back would make far worse outweighs the layout
    check_turned(detector, stats, gate, grid, score - 40 * familiarity.spread(detector.payload), "upside down")
    assert gate.measures["turned_gain"] > 0 and gate.measures["turned_evidence"] < familiarity.TURNED_EVIDENCE


def test_the_model_is_not_asked_about_an_upright_film(detector, monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(detector, "score_many", lambda images: asked.append(images) or np.zeros(len(images)))
    _, gate = _gated(detector, read_radiograph(NIH_NORMAL).pixels, "upright")
    assert asked == [] and gate.measures["turned_gain"] <= 0 and "turned_evidence" not in gate.measures


def test_a_picture_unusual_every_way_round_is_flagged_not_refused_as_turned(detector) -> None:
    for name in ("coins", "astronaut"):
        res, gate = _gated(detector, _skimage_grey(name), name)  # no orientation refusal
        assert "unusual_layout" in gate.flags and res.score > 0, (name, gate.measures)


def test_strict_refuses_what_the_new_rules_flag_with_the_reason(detector) -> None:
    with pytest.raises(NotAChestRadiographError) as exc:
        score_gated(detector, _headerless("693_J2KI.dcm"), "693_J2KI", maps=False, strict=True)
    assert exc.value.reason == "unusual_texture" and "texture is unlike" in str(exc.value)
    assert float(exc.value.detail) > familiarity.TEXTURE_SPREADS
    assert set(NEW_FLAGS) <= set(NOT_A_CHEST_REASONS) & set(WARNINGS) & set(FLAG_CODES)


def test_a_model_file_without_statistics_still_scores_and_says_the_rules_do_not_run(tmp_path, caplog) -> None:
    from anatpaste.score.detector import Detector

    payload = load_model(DEFAULT_MODEL)
    save_model({k: v for k, v in payload.items() if k != KEY}, tmp_path / "old.pt")
    old = Detector.load(tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING, logger="anatpaste.gate.familiarity"):
        res, gate = _gated(old, _skimage_grey("camera"), "camera")
        _gated(old, _skimage_grey("coins"), "coins")
    said = [r for r in caplog.records if "holds no input statistics" in r.getMessage()]
    assert len(said) == 1 and "layout and texture checks do not run" in said[0].getMessage()  # once per file
    assert res.score > 0 and not {"unusual_layout", "unusual_texture"} & set(gate.flags) and gate.measures == {}
    with pytest.raises(NotAChestRadiographError) as exc:  # orientation still judged: geometry, then the score
        _gated(old, np.rot90(read_radiograph(NIH_NORMAL).pixels), "turned")
    assert exc.value.detail == "turned by 90 degrees"
    strip = check_content(read_radiograph(NIH_NORMAL).pixels[:100], "strip")
    typical = float(np.median(old.payload["threshold"]["holdout_scores"]))  # a normal film's score
    assert model_checks(old, strip, typical, "strip") == ["partial_film"]  # the shape needs no statistics


def test_cli_rows_carry_the_new_flags_and_refuse_them_on_request(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.round(255 * _skimage_grey("camera")).astype(np.uint8)).save(folder / "camera.png")
    pixels = read_radiograph(NIH_NORMAL).pixels
    Image.fromarray(np.round(255 * pixels[: pixels.shape[0] // 4]).astype(np.uint8)).save(folder / "strip.png")
    Image.fromarray(np.round(255 * pixels).astype(np.uint8)).save(folder / "film.png")
    run = [sys.executable, "-m", "anatpaste", "score", str(folder), "--output", str(tmp_path / "s.csv")]
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    rows = {Path(r["path"]).stem: r for r in csv.DictReader((tmp_path / "s.csv").open())}
    assert {"unusual_layout", "unusual_texture"} <= set(rows["camera"]["flag"].split(";"))
    assert float(rows["camera"]["score"]) > 0 and rows["film"]["flag"] == rows["film"]["error"] == ""
    assert "partial_film" in rows["strip"]["flag"].split(";")
    assert f"flagged {folder / 'camera.png'}: its texture is unlike" in proc.stderr
    assert f"flagged {folder / 'camera.png'}: laid out unlike" in proc.stderr
    strict = subprocess.run([*run, "--refuse-flagged"], capture_output=True, text=True)
    assert strict.returncode == 0, strict.stderr
    rows = {Path(r["path"]).stem: r for r in csv.DictReader((tmp_path / "s.csv").open())}
    assert rows["camera"]["reason"] == "unusual_layout" and rows["camera"]["score"] == ""  # the first flag
    assert "not scored: laid out unlike" in rows["camera"]["error"]
    assert rows["strip"]["reason"] in ("partial_film", "unusual_layout", "unusual_texture", "no_lungs")
    assert float(rows["film"]["score"]) > 0 and rows["film"]["error"] == ""


def test_the_statistics_are_those_of_the_model_files_own_encoder(few_normals, caplog) -> None:
    """Another encoder (a fine-tune) sees other textures: its statistics must be refitted, and a payload whose
    encoder was replaced without refitting them (its parent's copied along) does not use them, and says so."""
    from anatpaste.model.file import encoder_of, quantize_state
    from anatpaste.score.detector import Detector

    parent = with_input_statistics(load_model(ZHANGLAB_MODEL), few_normals)
    assert statistics_problem(parent) is None
    enc = encoder_of(parent)
    with torch.no_grad():
        enc.layer1[0].conv1.weight.mul_(1.5)
    tuned = {**parent, "encoder": quantize_state(enc.state_dict())}  # as adapt builds a fine-tuned candidate
    assert "another encoder" in statistics_problem(tuned) and InputStatistics.of(tuned) is None
    with caplog.at_level(logging.WARNING, logger="anatpaste.gate.familiarity"):
        assert familiarity.input_statistics(Detector(tuned, version="tuned")) is None
    assert any("fitted with another encoder" in r.getMessage() for r in caplog.records)
    refit = with_input_statistics(tuned, few_normals, encoder=encoder_of(tuned))
    assert statistics_problem(refit) is None
    assert torch.equal(parent[KEY]["layout"]["mean"], refit[KEY]["layout"]["mean"])  # the layout needs no encoder
    assert not torch.allclose(parent[KEY]["texture"]["mean"], refit[KEY]["texture"]["mean"])
    older = {**parent, KEY: {**parent[KEY], "version": 1}}
    assert "format 1" in statistics_problem(older) and "no input statistics" in statistics_problem(
        {k: v for k, v in parent.items() if k != KEY})
