"""The module's Logic: the reviewer's session (network, state) joined to the MRML scene.

What needs 3D Slicer's application is injected: how a file becomes a volume (``slicer.util.loadVolume``
in Slicer) and the view layout (``slicer.app.layoutManager()``). Everything else is MRML, so the Logic
runs on slicer-core in the project's tests. Problems are shown through :meth:`ReviewSession.report_error`;
the Logic never opens a dialog.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import slicer

from . import scene as S
from .answers import ScoreResult
from .dicom_objects import ArchiveFindings
from .images import ResultMaps
from .session import ReviewSession
from .workflow import Study

VolumeLoader = Callable[[str], "slicer.vtkMRMLVolumeNode"]


class Layout(Protocol):
    """The application's view layout (in Slicer: its layout manager)."""

    def show_one_view(self) -> None:
        """Show the Red slice view alone."""

    def fit(self) -> None:
        """Fit the Red slice view to its volumes."""


class NoLayout:
    """No views to arrange (slicer-core, or Slicer without a main window)."""

    def show_one_view(self) -> None:
        pass

    def fit(self) -> None:
        pass


class Parameters(Protocol):
    """What the GUI sets (in Slicer: the module's parameter node, its fields named as in the .ui)."""

    radiograph: Any  # vtkMRMLScalarVolumeNode or None
    heatmapOpacity: float  # noqa: N815 - the parameter node's field names
    showLungs: bool  # noqa: N815


@dataclass
class PlainParameters:
    """:class:`Parameters` without a parameter node."""

    radiograph: Any = None
    heatmapOpacity: float = 0.5  # noqa: N815
    showLungs: bool = True  # noqa: N815


def _new_temp_folder() -> str:
    return tempfile.mkdtemp(prefix="AnatPasteReview-")


class ReviewLogic:
    """Open, show, score and review radiographs in an MRML scene. Usable without the widget.

    Args:
        scene: the MRML scene (``slicer.mrmlScene`` in Slicer).
        load_volume: reads a PNG/JPEG/DICOM file into a volume node of ``scene``.
        session: the reviewer's session (default: a new one that refuses every upload until the
            widget sets its ``consent``).
        layout: see :class:`Layout` (default: :class:`NoLayout`).
        parameters: returns the current GUI parameters (default: one :class:`PlainParameters`).
        temp_folder: returns a folder for downloads and exports.
        dicom_database: returns Slicer's DICOM database (anything with ``fileForInstance(uid)``) or None.
    """

    def __init__(
        self,
        scene: slicer.vtkMRMLScene,
        load_volume: VolumeLoader,
        *,
        session: ReviewSession | None = None,
        layout: Layout | None = None,
        parameters: Callable[[], Parameters] | None = None,
        temp_folder: Callable[[], str] = _new_temp_folder,
        dicom_database: Callable[[], Any] = lambda: None,
    ):
        self.scene = scene
        self.load_volume = load_volume
        self.session = session or ReviewSession()
        self.layout = layout or NoLayout()
        plain = PlainParameters()
        self.parameters = parameters or (lambda: plain)
        self.temp_folder = temp_folder
        self.dicom_database = dicom_database
        self.session.result_ready.connect(self.show_result)
        self.session.study_downloaded.connect(self.open_downloaded)
        self.session.archive_ready.connect(self.show_archive)

    # ------------------------------------------------------------------------------------- studies
    def open_file(self, path: str, image_id: str | None = None) -> slicer.vtkMRMLScalarVolumeNode:
        """Load a PNG/JPEG/DICOM file as a single-slice volume and make it the study under review.

        Raises:
            SceneError: the file is no single 2-D image (e.g. a 3-D series).
        """
        volume = S.as_scalar_radiograph(self.scene, self.load_volume(path))
        source = "server" if image_id else "file"
        self.set_radiograph(volume, Study(os.path.basename(path), source, image_id, path, volume.GetID()))
        return volume

    def open_downloaded(self, path: str, image_id: str) -> None:
        """The worklist's next study: open it and score it (by id: no image data leaves this computer)."""
        self.open_file(path, image_id)
        self.session.score()

    def set_radiograph(self, volume: slicer.vtkMRMLScalarVolumeNode | None, study: Study | None = None) -> None:
        """Review ``volume`` (e.g. one chosen in the selector after loading it from the DICOM database)."""
        if volume is None:
            self.session.set_study(None)
            return
        if S.is_overlay(volume):
            self.session.report_error(f"{volume.GetName()} is a score overlay: choose the radiograph itself.")
            return
        if study is None:
            source, path = S.study_source(volume, self.dicom_database())
            if path is None:  # only in the scene: send its pixels as a 16-bit PNG
                path = S.export_png(volume, self.temp_folder())
            study = Study(volume.GetName(), source, None, path, volume.GetID())
        self.session.set_study(study)  # first: the parameter node's observer then sees nothing to do
        params = self.parameters()
        if params.radiograph is not volume:
            params.radiograph = volume
        self.show(volume)

    def next_study(self) -> None:
        """Fetch the worklist's next study (opened and scored when it arrives, see open_downloaded)."""
        self.session.next_study(self.temp_folder())

    # --------------------------------------------------------------------------------------- views
    def show(self, volume: slicer.vtkMRMLScalarVolumeNode) -> None:
        """The radiograph (and its heatmap, once scored) alone in the Red slice view, fitted."""
        overlays = S.overlays_of(self.scene, volume)
        self.layout.show_one_view()
        heatmap = overlays.heatmap if overlays else None
        S.show_in_views(self.scene, volume, heatmap, self.parameters().heatmapOpacity)
        self.layout.fit()

    def show_result(self, study: Study, result: ScoreResult, maps: ResultMaps) -> None:
        """A score arrived: its heatmap and lung mask over the radiograph it belongs to."""
        volume = self.scene.GetNodeByID(study.volume_id) if study.volume_id else None
        if volume is None:
            self.session.report_error("The radiograph was removed from the scene before its score arrived.")
            return
        overlays = S.show_result(
            self.scene, volume, maps.heatmap, maps.lung_mask, result.heatmap_display_max, result.heatmap_coloured
        )
        S.set_lungs_visible(overlays.lungs, self.parameters().showLungs)
        self.show(volume)

    def look_up_archive(self, archive_url: str, capture: bool = False) -> None:
        """Ask the DICOMweb archive what AnatPaste wrote for the study under review (shown when it arrives)."""
        self.session.look_up_archive(archive_url, capture)

    def show_archive(self, study: Study, found: ArchiveFindings) -> None:
        """The archive answered: this radiograph's lung SEG as a segmentation over it, and the heatmap capture (if
        fetched) as the Red view's foreground over the radiograph, faded by the heatmap opacity (a new score puts
        the live heatmap back)."""
        volume = self.scene.GetNodeByID(study.volume_id) if study.volume_id else None
        if volume is None:
            self.session.report_error("The radiograph was removed from the scene before the archive answered.")
            return
        if found.seg is not None:
            version = found.seg.model_version or "unknown model"
            S.show_archive_segments(self.scene, volume, [(s.label, s.mask) for s in found.seg.segments],
                                    f"archive SEG ({version})", found.seg.sop_instance_uid)
        if found.capture is not None:
            version = found.capture.model_version or "unknown model"
            capture = S.show_archive_capture(self.scene, volume, found.capture.pixels,
                                             f"archive heatmap ({version})", found.capture.sop_instance_uid)
            self.layout.show_one_view()
            S.show_in_views(self.scene, volume, capture, self.parameters().heatmapOpacity)
            self.layout.fit()

    def apply_parameters(self, params: Parameters | None = None) -> None:
        """The parameters changed (GUI or scene): follow the radiograph, opacity, lung visibility."""
        params = self.parameters() if params is None else params
        state = self.session.state
        volume = params.radiograph
        current = state.study.volume_id if state.study else None
        if (volume.GetID() if volume else None) != current:
            self.set_radiograph(volume)
        S.set_heatmap_opacity(self.scene, params.heatmapOpacity)
        if volume is not None:
            overlays = S.overlays_of(self.scene, volume)
            S.set_lungs_visible(overlays.lungs if overlays else None, params.showLungs)
