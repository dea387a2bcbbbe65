"""The extension's client, session and scene layer against the project's real MONAI Label server:
worklist, score (by id and by upload), maps in the image's grid, errors, reviews, training progress, stop,
publication of a new model version and re-scoring. The tests run in file order and share one server."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer
import vtk
from AnatPasteReviewLib import scene as S
from AnatPasteReviewLib.client import AnatPasteClient, ServerResponseError, Timeouts
from AnatPasteReviewLib.images import read_result_maps
from AnatPasteReviewLib.session import ReviewSession
from AnatPasteReviewLib.workflow import Study, controls

from anatpaste.io import read_radiograph

TIMEOUTS = Timeouts(connect=2.0, read=120.0, total=300.0)
# A training run small enough for a 2-core CPU; the gate settings make publication certain, so that the
# new-version path is tested every time (the gate itself is the server's tests' business).
TINY_TRAINING = {
    "mode": "finetune",
    "steps": 4,
    "image_size": 64,
    "batch_size": 4,
    "eval_every": 2,
    "gate_min_auc": 0.0,
    "gate_tolerance": 1.0,
}


def wait_for(fn, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def client(real_server) -> AnatPasteClient:
    return AnatPasteClient(real_server["url"], timeouts=TIMEOUTS)


def settle(session: ReviewSession, timeout: float = 300.0) -> None:
    assert session.runner.wait_idle(timeout), "a server call did not finish"


def test_info_reports_the_published_model(client):
    info = client.info()
    assert info.model_available
    assert info.trainer_available
    assert info.model_version
    assert info.threshold is not None
    assert info.image_size == 64  # the tiny model the server was seeded with
    assert not info.training.running


def test_worklist_study_scored_by_id_has_maps_in_its_own_grid(client, tmp_path):
    image_id = wait_for(client.next_study, 120, "the start-up scoring to fill the worklist")
    path = client.download_image(image_id, tmp_path)
    pixels = read_radiograph(path).pixels  # the server's own reader: the contract's pixel grid
    result = client.score(image_id=image_id)
    assert result.image == image_id
    assert result.shape == pixels.shape
    assert result.model_version == client.info().model_version
    assert result.abnormal == (result.score > result.threshold)
    maps = read_result_maps(result.maps_nrrd, result.shape)
    assert maps.heatmap.shape == pixels.shape
    assert np.isfinite(maps.heatmap).all()
    assert 0 < maps.lung_mask.mean() < 0.8  # some lung, not the whole image
    again = client.score(image_id=image_id, maps=False)
    assert again.maps_nrrd is None
    assert again.score == pytest.approx(result.score, rel=1e-5)


def test_uploaded_file_scores_like_its_datastore_copy(client, tmp_path):
    image_id = wait_for(client.next_study, 60, "a worklist study")
    path = client.download_image(image_id, tmp_path)
    studies = set(client.datastore()["objects"])
    by_id = client.score(image_id=image_id)
    uploaded = client.score(path=path)
    assert uploaded.image is None
    assert uploaded.score == pytest.approx(by_id.score, rel=1e-5)
    np.testing.assert_allclose(
        read_result_maps(uploaded.maps_nrrd).heatmap, read_result_maps(by_id.maps_nrrd).heatmap, rtol=1e-5
    )
    assert set(client.datastore()["objects"]) == studies  # scoring an upload stores nothing


def test_server_errors_are_readable(client, tmp_path):
    with pytest.raises(ServerResponseError) as err:
        client.score(image_id="../../etc/passwd")
    assert err.value.status == 400
    assert "400 Bad Request" in str(err.value)
    with pytest.raises(ServerResponseError) as err:
        client.score(image_id="no-such-study")
    assert err.value.status == 404
    assert "no-such-study" in str(err.value)
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"this is not an image")
    with pytest.raises(ServerResponseError) as err:
        client.score(path=fake)
    assert err.value.status == 422
    assert "Error:" in err.value.detail  # the core's typed error name, e.g. UnreadableImageError: ...


def test_session_and_scene_show_the_servers_result_on_the_radiograph(real_server, mrml, tmp_path):
    session = ReviewSession(client_factory=lambda url: AnatPasteClient(url, timeouts=TIMEOUTS))
    shown = []

    def open_downloaded(path, image_id):  # what the module's Logic does, with slicer-core instead of Slicer
        radiograph = read_radiograph(path)
        volume = S.volume_from_array(mrml, radiograph.pixels, radiograph.spacing, name=image_id)
        session.set_study(Study(image_id, "server", image_id, path, volume.GetID()))
        session.score()

    def show(study, result, maps):
        volume = mrml.GetNodeByID(study.volume_id)
        shown.append(
            (volume, maps, S.show_result(mrml, volume, maps.heatmap, maps.lung_mask, result.heatmap_display_max))
        )

    session.study_downloaded.connect(open_downloaded)
    session.result_ready.connect(show)
    session.connect(real_server["url"])
    settle(session)
    assert session.state.connected, session.state.error
    session.next_study(str(tmp_path))
    settle(session)
    assert session.state.error is None
    ((volume, maps, overlays),) = shown
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(overlays.heatmap)[0], maps.heatmap)
    np.testing.assert_array_equal(S.lung_mask_array(overlays.lungs, volume), maps.lung_mask)
    a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(a)
    overlays.heatmap.GetIJKToRASMatrix(b)
    assert all(a.GetElement(r, c) == b.GetElement(r, c) for r in range(4) for c in range(4))
    c = controls(session.state)
    assert c.verdict in ("normal", "abnormal")
    assert c.score_text.startswith("Score ")
    assert c.confirm_normal


def test_reviews_are_stored_as_the_trainer_expects(client):
    ids = sorted(client.datastore()["objects"])
    normals = ids[:4]  # the trainer needs at least 4 normal images
    for image_id in normals:
        client.set_review(image_id, "normal")
    client.set_review(ids[4], "abnormal")
    for image_id in normals:
        info = client.image_info(image_id)
        assert info["review"] == "normal"
        assert info["reviewed_at"]
    assert client.image_info(ids[4])["review"] == "abnormal"
    assert client.info().training.new_confirmed_normals == 4
    assert client.next_study() not in [*normals, ids[4]]  # reviewed studies leave the worklist


def test_training_progress_and_stop_keep_the_published_model(real_server, client):
    before = client.info().model_version
    session = ReviewSession(client_factory=lambda url: AnatPasteClient(url, timeouts=TIMEOUTS))
    session.connect(real_server["url"])
    settle(session)
    assert controls(session.state).start_training  # 4 new confirmed normals
    session.start_training({**TINY_TRAINING, "steps": 2000})
    settle(session)
    assert session.state.error is None
    assert session.state.training_running
    assert controls(session.state).stop_training
    assert not controls(session.state).start_training

    def progressed():
        session.poll_now()
        settle(session)
        t = session.state.training
        return t.total == 2000 and (t.step or 0) >= 1

    wait_for(progressed, 180, "the first training steps")
    assert "step " in controls(session.state).training_text
    session.stop_training()
    settle(session)
    wait_for(lambda: client.training_status().status == "STOPPED", 30, "training to stop")
    session.poll_now()
    settle(session)
    assert not session.state.training_running
    assert client.info().model_version == before
    assert controls(session.state).start_training  # the normals are still new


def test_finished_training_publishes_a_new_version_and_rescoring_uses_it(real_server, client):
    image_id = sorted(client.datastore()["objects"])[5]
    session = ReviewSession(client_factory=lambda url: AnatPasteClient(url, timeouts=TIMEOUTS))
    session.connect(real_server["url"])
    settle(session)
    before = session.state.model_version
    session.set_study(Study(image_id, "server", image_id=image_id))
    session.score()
    settle(session)
    assert session.state.result.model_version == before
    session.start_training(TINY_TRAINING)
    settle(session)

    def finished():
        session.poll_now()
        settle(session)
        return not session.state.training_running

    wait_for(finished, 300, "the tiny training to finish", interval=1.0)
    t = session.state.training
    assert t.status == "DONE", f"{t} / {client.training_status()}"
    assert t.outcome == "published"
    after = session.state.model_version
    assert after != before
    assert t.published_version == after
    assert session.state.message == f"Training finished; model {after} is published."
    c = controls(session.state)
    assert c.rescore
    assert after in c.new_model_text
    assert not c.start_training  # every confirmed normal is in the new model
    session.score()
    settle(session)
    assert session.state.result.model_version == after
    assert not controls(session.state).rescore


def test_an_inverted_film_is_scored_with_the_gates_warning_in_words(client, tmp_path):
    # A real adult normal with its grey scale inverted: the server's input gate re-inverts and scores it, and the
    # module's status line carries the gate's warning (the Widget shows state.message).
    from PIL import Image
    from shared_data import SHARED_DATA

    from anatpaste.data import find_images

    film = read_radiograph(find_images(SHARED_DATA / "nih" / "test" / "NORMAL")[0]).pixels
    path = tmp_path / "inverted.png"
    Image.fromarray(((1.0 - film) * 255).round().astype(np.uint8)).save(path)
    result = client.score(path=path, maps=False)
    assert result.warnings, "the server's gate said nothing about an inverted film"
    assert result.heatmap_coloured is result.abnormal  # the real server says whether the map is coloured
    line = result.summary("inverted.png")
    assert line.startswith("Scored inverted.png: ") and "Warning: " in line and "invert" in line.lower()
