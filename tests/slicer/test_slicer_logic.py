"""The module's Logic (AnatPasteReviewLib.logic) on real MRML from slicer-core, against the local fake server.

Only what needs 3D Slicer's application is replaced: the file reader (``slicer.util.loadVolume``, here a
Pillow read into a volume node) and the layout manager (here a recorder). The scene, the session, the
client and the overlays are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import slicer
from AnatPasteReviewLib import scene as S
from AnatPasteReviewLib.client import AnatPasteClient, Timeouts
from AnatPasteReviewLib.logic import PlainParameters, ReviewLogic
from AnatPasteReviewLib.session import ReviewSession
from AnatPasteReviewLib.workflow import Study
from PIL import Image
from slicer_fake_server import test_maps
from test_slicer_scene import slice_view

FAST = Timeouts(connect=0.5, read=2.0, total=5.0)


class RecordingLayout:
    def __init__(self):
        self.calls: list[str] = []

    def show_one_view(self) -> None:
        self.calls.append("one view")

    def fit(self) -> None:
        self.calls.append("fit")


@pytest.fixture
def views(mrml):
    return slice_view(mrml, "Red")


@pytest.fixture
def logic(mrml, views, tmp_path):
    def load_volume(path: str):  # what slicer.util.loadVolume gives for a 2-D file: a one-slice volume
        return S.volume_from_array(mrml, np.asarray(Image.open(path)).astype(np.float32), name=Path(path).stem)

    session = ReviewSession(client_factory=lambda url: AnatPasteClient(url, timeouts=FAST), consent=lambda s, a: True)
    folder = tmp_path / "temp"
    folder.mkdir()
    return ReviewLogic(mrml, load_volume, session=session, layout=RecordingLayout(), temp_folder=lambda: str(folder))


def settle(session: ReviewSession) -> None:
    assert session.runner.wait_idle(10.0), "a server call did not finish"


def connect(logic: ReviewLogic, url: str) -> None:
    logic.session.connect(url)
    settle(logic.session)
    assert logic.session.state.connected, logic.session.state.error


def test_open_file_makes_the_study_and_shows_it_alone(logic, mrml, views, fake, tmp_path):
    path = tmp_path / "chest.png"
    path.write_bytes(fake.state.images["study-b"]["data"])
    volume = logic.open_file(str(path))
    assert mrml.GetNodeByID(volume.GetID()) is volume
    assert logic.session.state.study == Study("chest.png", "file", None, str(path), volume.GetID())
    assert logic.parameters().radiograph is volume
    assert logic.layout.calls == ["one view", "fit"]
    _, composite = views
    assert composite.GetBackgroundVolumeID() == volume.GetID()
    assert composite.GetForegroundVolumeID() is None  # not scored yet


def test_next_study_is_opened_scored_and_overlaid(logic, mrml, views, fake):
    connect(logic, fake.url)
    logic.parameters().heatmapOpacity = 0.3
    logic.next_study()
    settle(logic.session)  # download -> open -> score by id -> overlays
    state = logic.session.state
    assert state.error is None
    assert state.study.image_id == "study-a"
    assert fake.calls("POST", "/infer/anatpaste")[0].query["image"] == "study-a"
    assert fake.calls("PUT", "/datastore/image") == []  # a worklist study is never uploaded
    volume = mrml.GetNodeByID(state.study.volume_id)
    overlays = S.overlays_of(mrml, volume)
    heat, mask = test_maps((48, 64))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(overlays.heatmap)[0], heat)
    np.testing.assert_array_equal(S.lung_mask_array(overlays.lungs, volume), mask)
    _, composite = views
    assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (
        volume.GetID(),
        overlays.heatmap.GetID(),
    )
    assert composite.GetForegroundOpacity() == pytest.approx(0.3)
    assert overlays.lungs.GetDisplayNode().GetVisibility()


def test_parameters_follow_radiograph_opacity_and_lungs(logic, mrml, views, fake):
    connect(logic, fake.url)
    logic.next_study()
    settle(logic.session)
    first = mrml.GetNodeByID(logic.session.state.study.volume_id)
    overlays = S.overlays_of(mrml, first)
    params = PlainParameters(radiograph=first, heatmapOpacity=0.8, showLungs=False)
    logic.apply_parameters(params)
    _, composite = views
    assert composite.GetForegroundOpacity() == pytest.approx(0.8)
    assert not overlays.lungs.GetDisplayNode().GetVisibility()
    other = S.volume_from_array(mrml, np.zeros((40, 40), np.float32), name="scene only")
    logic.apply_parameters(PlainParameters(radiograph=other, heatmapOpacity=0.8, showLungs=False))
    study = logic.session.state.study
    assert (study.volume_id, study.source, study.image_id) == (other.GetID(), "scene", None)
    assert Path(study.path).name == "scene_only.png"  # exported to the temp folder, for an upload
    assert composite.GetBackgroundVolumeID() == other.GetID()
    logic.apply_parameters(PlainParameters(radiograph=None))
    assert logic.session.state.study is None


def test_an_overlay_chosen_as_radiograph_is_reported_through_the_session(logic, mrml, fake):
    connect(logic, fake.url)
    logic.next_study()
    settle(logic.session)
    study = logic.session.state.study
    overlays = S.overlays_of(mrml, mrml.GetNodeByID(study.volume_id))
    changes = []
    logic.session.changed.connect(lambda: changes.append(logic.session.state.error))
    logic.set_radiograph(overlays.heatmap)
    assert changes == [f"{overlays.heatmap.GetName()} is a score overlay: choose the radiograph itself."]
    assert logic.session.state.study == study  # the study under review stays


def test_a_score_for_a_removed_radiograph_is_an_error_not_a_crash(logic, mrml, fake):
    connect(logic, fake.url)
    logic.next_study()
    settle(logic.session)
    volume = mrml.GetNodeByID(logic.session.state.study.volume_id)
    logic.session.score()
    mrml.RemoveNode(volume)  # while the score is on its way
    settle(logic.session)
    assert logic.session.state.error == "The radiograph was removed from the scene before its score arrived."
    assert mrml.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1  # the first score's only


def test_a_file_that_is_no_radiograph_is_refused(mrml, tmp_path):
    def load_series(path: str):
        node = mrml.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "series")
        slicer.util.updateVolumeFromArray(node, np.zeros((3, 8, 8), np.float32))
        return node

    logic = ReviewLogic(mrml, load_series)
    with pytest.raises(S.SceneError, match="3 slices"):
        logic.open_file(str(tmp_path / "ct.nrrd"))
    assert logic.session.state.study is None
