"""The MRML side: radiograph volumes, the heatmap overlay and the lung-mask segmentation.

Only MRML and VTK are used (no Qt, no ``slicer.app``), so everything here also runs on slicer-core
outside 3D Slicer. The overlays take the radiograph volume's IJKToRAS matrix: they line up with the
radiograph whatever geometry Slicer gave it (PNG, JPEG, DICOM with any orientation).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import slicer
import vtk

ROLE_ATTRIBUTE = "AnatPaste.Role"  # on overlay nodes: "heatmap", "lungs", "archive segmentation", "archive capture"
RADIOGRAPH_ATTRIBUTE = "AnatPaste.Radiograph"  # on overlay nodes: the radiograph's node ID
OBJECT_ATTRIBUTE = "AnatPaste.SOPInstanceUID"  # on nodes loaded from the archive: the DICOM object's UID
HEAT_COLOR_NAME = "AnatPasteHeat"
LUNG_SEGMENT_NAME = "Lungs"
LUNG_COLOR = (0.0, 0.85, 1.0)
ARCHIVE_SEGMENTATION, ARCHIVE_CAPTURE = "archive segmentation", "archive capture"
# segments read from the archive: green first, so that they stand apart from the live score's cyan lungs
ARCHIVE_COLORS = ((0.35, 0.9, 0.35), (1.0, 0.8, 0.2), (0.9, 0.4, 0.9), (1.0, 0.5, 0.3))


class SceneError(ValueError):
    """A volume cannot serve as a radiograph, or overlays do not fit it."""


@dataclass(frozen=True)
class Overlays:
    """The nodes that show one score on its radiograph."""

    heatmap: slicer.vtkMRMLScalarVolumeNode
    lungs: slicer.vtkMRMLSegmentationNode


# ------------------------------------------------------------------------------------ radiographs
def volume_from_array(
    scene: slicer.vtkMRMLScene,
    pixels: np.ndarray,
    spacing: tuple[float, float] | None = None,
    name: str = "radiograph",
) -> slicer.vtkMRMLScalarVolumeNode:
    """A single-slice scalar volume from a (H, W) image, row 0 at the top.

    The geometry is what 3D Slicer gives a 2-D image file: LPS identity directions, i.e. IJKToRAS =
    diag(-col_mm, -row_mm, 1): shown upright and unmirrored in an axial slice view.
    """
    a = np.asarray(pixels)
    if a.ndim != 2 or min(a.shape) < 1:
        raise SceneError(f"expected a 2-D image, got shape {a.shape}")
    row_mm, col_mm = spacing if spacing else (1.0, 1.0)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, a[np.newaxis])
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 0, -col_mm)
    m.SetElement(1, 1, -row_mm)
    node.SetIJKToRASMatrix(m)
    node.CreateDefaultDisplayNodes()
    return node


def is_overlay(node) -> bool:
    """Whether a node is a heatmap or lung mask made by :func:`show_result` (not a radiograph)."""
    return node is not None and bool(node.GetAttribute(ROLE_ATTRIBUTE))


def radiograph_shape(volume: slicer.vtkMRMLVolumeNode) -> tuple[int, int]:
    """(H, W) of a single-slice volume (rows = j, columns = i).

    Raises:
        SceneError: no image data, or more than one slice.
    """
    image = volume.GetImageData() if volume is not None else None
    if image is None:
        raise SceneError("the volume has no image data")
    w, h, d = image.GetDimensions()
    if d != 1:
        raise SceneError(f"{volume.GetName()} has {d} slices: a radiograph is a single 2-D image")
    return h, w


def as_scalar_radiograph(
    scene: slicer.vtkMRMLScene, volume: slicer.vtkMRMLVolumeNode
) -> slicer.vtkMRMLScalarVolumeNode:
    """The volume itself when it is a single-slice scalar volume; for an RGB(A) picture (JPEG stored in
    colour) a new scalar volume holding the mean of the colour channels, with the same geometry."""
    radiograph_shape(volume)
    if volume.GetImageData().GetNumberOfScalarComponents() == 1:
        return volume
    rgb = slicer.util.arrayFromVolume(volume)  # (1, H, W, C)
    grey = rgb[..., :3].astype(np.float32).mean(axis=-1)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{volume.GetName()} grey")
    slicer.util.updateVolumeFromArray(node, grey)
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    node.SetIJKToRASMatrix(m)
    node.CreateDefaultDisplayNodes()
    return node


def radiograph_pixels(volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The (H, W) pixel array of a single-slice scalar volume (a copy)."""
    radiograph_shape(volume)
    a = slicer.util.arrayFromVolume(volume)
    if a.ndim != 3:
        raise SceneError(f"{volume.GetName()} is not a scalar volume")
    return np.array(a[0])


def export_png(volume: slicer.vtkMRMLVolumeNode, folder: str) -> str:
    """Write a single-slice volume's pixels as a 16-bit PNG (for a radiograph that has no file); return
    the path. The name comes from the node's, made safe for a file system."""
    from .images import encode_png16

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", volume.GetName() or "").strip("._") or "radiograph"
    path = os.path.join(folder, f"{name}.png")
    with open(path, "wb") as f:
        f.write(encode_png16(radiograph_pixels(volume)))
    return path


def study_source(volume: slicer.vtkMRMLVolumeNode, dicom_database=None) -> tuple[str, str | None]:
    """Where a volume came from: ("dicom", file) for Slicer's DICOM database, ("file", path) for a
    loaded file, ("scene", None) when no file is known.

    Args:
        volume: the radiograph volume.
        dicom_database: ``slicer.dicomDatabase`` (anything with ``fileForInstance(uid)``), or None.
    """
    uids = (volume.GetAttribute("DICOM.instanceUIDs") or "").split()
    if uids and dicom_database is not None:
        path = dicom_database.fileForInstance(uids[0])
        if path and os.path.isfile(path):
            return "dicom", path
    storage = volume.GetStorageNode()
    path = storage.GetFileName() if storage is not None else None
    if path and os.path.isfile(path):
        return "file", path
    return "scene", None


# ------------------------------------------------------------------------------------------ overlays
def heat_color_node(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLColorTableNode:
    """A heat colour table, red -> orange -> yellow (never white: white would vanish on bone), whose low end
    fades to transparent. Created once per scene, so that it exists outside 3D Slicer too."""
    existing = scene.GetFirstNodeByName(HEAT_COLOR_NAME)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", HEAT_COLOR_NAME)
    node.SetTypeToUser()
    node.SetHideFromEditors(False)
    n = 256
    node.SetNumberOfColors(n)
    for i in range(n):
        v = i / (n - 1)
        red, green = min(1.0, 0.6 + 0.8 * v), min(1.0, max(0.0, 1.6 * v - 0.6))
        alpha = min(1.0, 4 * v)  # fade in over the lowest quarter
        node.SetColor(i, f"heat{i}", red, green, 0.0, alpha)
    return node


def show_result(
    scene: slicer.vtkMRMLScene,
    radiograph: slicer.vtkMRMLScalarVolumeNode,
    heatmap: np.ndarray,
    lung_mask: np.ndarray,
    display_max: float | None = None,
    coloured: bool = True,
) -> Overlays:
    """Put a score's maps on its radiograph: a heatmap volume and a "Lungs" segmentation.

    The nodes are reused for the same radiograph (a re-score replaces their content).

    Args:
        scene: the MRML scene.
        radiograph: the single-slice volume that was scored.
        heatmap: float (H, W), in the radiograph's pixel grid (row 0 = top).
        lung_mask: bool (H, W), same grid.
        display_max: the server's ``heatmap_display_max``: the 99th percentile of the heat of held-out
            normal images. Heat below it is transparent (what a normal image reaches); the colour ramp
            runs from it to twice it. Default: this heatmap's 99th percentile.
        coloured: the server's ``heatmap_coloured``: False for a film below the threshold, whose map is loaded
            but fully transparent (colour would contradict its label; Volumes' threshold shows it anyway).

    Raises:
        SceneError: the maps do not have the radiograph's (H, W) shape.
    """
    shape = radiograph_shape(radiograph)
    heat = np.asarray(heatmap, dtype=np.float32)
    mask = np.asarray(lung_mask).astype(bool)
    if heat.shape != shape or mask.shape != shape:
        raise SceneError(
            f"the server's maps are {heat.shape[0]}x{heat.shape[1]} pixels but {radiograph.GetName()} is "
            f"{shape[0]}x{shape[1]}: the overlay cannot be aligned (was the image resized after loading?)"
        )
    ijk_to_ras = vtk.vtkMatrix4x4()
    radiograph.GetIJKToRASMatrix(ijk_to_ras)
    heat_node = _overlay_node(scene, radiograph, "heatmap", "vtkMRMLScalarVolumeNode", "anomaly heatmap")
    slicer.util.updateVolumeFromArray(heat_node, heat[np.newaxis])
    heat_node.SetIJKToRASMatrix(ijk_to_ras)
    _style_heatmap(scene, heat_node, heat, display_max, coloured)
    seg_node = _overlay_node(scene, radiograph, "lungs", "vtkMRMLSegmentationNode", "lungs")
    _fill_lungs(scene, seg_node, radiograph, mask, ijk_to_ras)
    return Overlays(heat_node, seg_node)


def _overlay_node(scene, radiograph, role: str, class_name: str, suffix: str):
    for node in _nodes(scene, class_name):
        if node.GetAttribute(ROLE_ATTRIBUTE) == role and node.GetAttribute(RADIOGRAPH_ATTRIBUTE) == radiograph.GetID():
            return node
    node = scene.AddNewNodeByClass(class_name, f"{radiograph.GetName()} {suffix}")
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.SetAttribute(RADIOGRAPH_ATTRIBUTE, radiograph.GetID())
    return node


def _style_heatmap(scene, node, heat: np.ndarray, display_max: float | None, coloured: bool = True) -> None:
    low = float(display_max) if display_max and display_max > 0 else float(np.percentile(heat, 99))
    low = max(low, 1e-6)
    top = 2.0 * low
    ceiling = max(float(heat.max()), top) + 1.0
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(heat_color_node(scene).GetID())
    display.SetAutoWindowLevel(0)
    display.SetWindowLevelMinMax(low, top)
    display.SetAutoThreshold(0)
    display.SetApplyThreshold(1)
    # below the threshold's lower end: transparent; for a film that is not coloured, every pixel
    display.SetThreshold(low if coloured else ceiling, ceiling)
    display.SetInterpolate(1)


def _fill_lungs(scene, seg_node, radiograph, mask: np.ndarray, ijk_to_ras) -> None:
    _fill_segments(scene, seg_node, radiograph, [(LUNG_SEGMENT_NAME, mask, LUNG_COLOR)], ijk_to_ras, keep_empty=False)


def _fill_segments(scene, seg_node, radiograph, segments, ijk_to_ras, keep_empty: bool) -> None:
    """Replace the node's segments by ``(name, bool mask, colour)`` in the radiograph's grid; an empty mask gives an
    empty segment when ``keep_empty`` (a SEG's declared segment), else none (the live score's lungs)."""
    segmentation = seg_node.GetSegmentation()
    segmentation.RemoveAllSegments()
    seg_node.SetReferenceImageGeometryParameterFromVolumeNode(radiograph)
    if seg_node.GetDisplayNode() is None:
        seg_node.CreateDefaultDisplayNodes()
    for name, mask, color in segments:
        if not mask.any():
            if keep_empty:
                segmentation.AddEmptySegment("", name, list(color))
            continue
        before = segmentation.GetNumberOfSegments()
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AnatPaste segment (temporary)")
        try:
            slicer.util.updateVolumeFromArray(labelmap, mask[np.newaxis].astype(np.uint8))
            labelmap.SetIJKToRASMatrix(ijk_to_ras)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, seg_node):
                raise SceneError(f"the mask {name!r} could not be imported into the segmentation")
        finally:
            scene.RemoveNode(labelmap)
        segment = segmentation.GetNthSegment(before)
        segment.SetName(name)
        segment.SetColor(*color)
    display = seg_node.GetDisplayNode()
    display.SetOpacity2DFill(0.15)
    display.SetOpacity2DOutline(1.0)
    display.SetVisibility2DOutline(True)


def lung_mask_array(seg_node: slicer.vtkMRMLSegmentationNode, radiograph: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The "Lungs" segment as bool (H, W) in the radiograph's grid (for checks and exports)."""
    scene = seg_node.GetScene()
    ids = vtk.vtkStringArray()
    seg_node.GetSegmentation().GetSegmentIDs(ids)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AnatPaste export (temporary)")
    try:
        if ids.GetNumberOfValues() and not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            seg_node, ids, labelmap, radiograph
        ):
            raise SceneError("the lung segmentation could not be exported")
        if labelmap.GetImageData() is None:
            return np.zeros(radiograph_shape(radiograph), dtype=bool)
        return slicer.util.arrayFromVolume(labelmap)[0] > 0
    finally:
        scene.RemoveNode(labelmap)


def segment_masks(seg_node: slicer.vtkMRMLSegmentationNode, radiograph: slicer.vtkMRMLVolumeNode) -> dict:
    """Each segment as bool (H, W) in the radiograph's grid, by segment name (for checks and exports)."""
    scene = seg_node.GetScene()
    segmentation = seg_node.GetSegmentation()
    out = {}
    for n in range(segmentation.GetNumberOfSegments()):
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segmentation.GetNthSegmentID(n))
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AnatPaste export (temporary)")
        try:
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                seg_node, ids, labelmap, radiograph
            ):
                raise SceneError("the segmentation could not be exported")
            image = labelmap.GetImageData()
            if image is None or image.GetNumberOfPoints() == 0:
                mask = np.zeros(radiograph_shape(radiograph), bool)
            else:
                mask = slicer.util.arrayFromVolume(labelmap)[0] > 0
        finally:
            scene.RemoveNode(labelmap)
        out[segmentation.GetNthSegment(n).GetName()] = mask
    return out


# ------------------------------------------------------------------------------- from the archive
def show_archive_segments(
    scene: slicer.vtkMRMLScene,
    radiograph: slicer.vtkMRMLScalarVolumeNode,
    segments: list[tuple[str, np.ndarray]],
    name: str,
    object_uid: str = "",
) -> slicer.vtkMRMLSegmentationNode:
    """A DICOM SEG's segments (``(label, bool mask)`` in the radiograph's pixel grid, as a SEG of a radiograph has
    them) as one segmentation node over the radiograph, with the radiograph's geometry; one such node per radiograph
    (loading another SEG replaces its content).

    Raises:
        SceneError: a mask that does not have the radiograph's (H, W) shape.
    """
    shape = radiograph_shape(radiograph)
    masks = [(str(label), np.asarray(mask).astype(bool)) for label, mask in segments]
    for label, mask in masks:
        if mask.shape != shape:
            raise SceneError(
                f"the archive's segment {label!r} is {mask.shape[0]}x{mask.shape[1]} pixels but "
                f"{radiograph.GetName()} is {shape[0]}x{shape[1]}: it belongs to another image"
            )
    ijk_to_ras = vtk.vtkMatrix4x4()
    radiograph.GetIJKToRASMatrix(ijk_to_ras)
    node = _overlay_node(scene, radiograph, ARCHIVE_SEGMENTATION, "vtkMRMLSegmentationNode", name)
    node.SetName(f"{radiograph.GetName()} {name}")
    node.SetAttribute(OBJECT_ATTRIBUTE, object_uid)
    colored = [(label, mask, ARCHIVE_COLORS[i % len(ARCHIVE_COLORS)]) for i, (label, mask) in enumerate(masks)]
    _fill_segments(scene, node, radiograph, colored, ijk_to_ras, keep_empty=True)
    return node


def show_archive_capture(
    scene: slicer.vtkMRMLScene,
    radiograph: slicer.vtkMRMLScalarVolumeNode,
    rgb: np.ndarray,
    name: str,
    object_uid: str = "",
) -> slicer.vtkMRMLVectorVolumeNode:
    """The heatmap capture (uint8 RGB (H, W, 3), the radiograph's pixel grid) as a colour volume with the
    radiograph's geometry; one per radiograph.

    Raises:
        SceneError: not an (H, W, 3) picture of the radiograph's size.
    """
    shape = radiograph_shape(radiograph)
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[:2] != shape:
        raise SceneError(
            f"the archive's heatmap capture has pixels {a.shape} but {radiograph.GetName()} is {shape[0]}x{shape[1]}"
        )
    ijk_to_ras = vtk.vtkMatrix4x4()
    radiograph.GetIJKToRASMatrix(ijk_to_ras)
    node = _overlay_node(scene, radiograph, ARCHIVE_CAPTURE, "vtkMRMLVectorVolumeNode", name)
    node.SetName(f"{radiograph.GetName()} {name}")
    node.SetAttribute(OBJECT_ATTRIBUTE, object_uid)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(a, dtype=np.uint8)[np.newaxis])
    node.SetIJKToRASMatrix(ijk_to_ras)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def archive_nodes(scene: slicer.vtkMRMLScene, radiograph: slicer.vtkMRMLVolumeNode) -> dict:
    """The nodes loaded from the archive for this radiograph, by role (ARCHIVE_SEGMENTATION, ARCHIVE_CAPTURE)."""
    found = {}
    for class_name in ("vtkMRMLVectorVolumeNode", "vtkMRMLSegmentationNode"):
        for node in _nodes(scene, class_name):
            role = node.GetAttribute(ROLE_ATTRIBUTE)
            if role in (ARCHIVE_SEGMENTATION, ARCHIVE_CAPTURE) and node.GetAttribute(RADIOGRAPH_ATTRIBUTE) == (
                radiograph.GetID()
            ):
                found[role] = node
    return found


def overlays_of(scene: slicer.vtkMRMLScene, radiograph: slicer.vtkMRMLVolumeNode) -> Overlays | None:
    """The overlays :func:`show_result` made for this radiograph, or None."""
    found = {}
    for class_name in ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"):
        for node in _nodes(scene, class_name):
            if node.GetAttribute(RADIOGRAPH_ATTRIBUTE) == radiograph.GetID():
                found[node.GetAttribute(ROLE_ATTRIBUTE)] = node
    if "heatmap" in found and "lungs" in found:
        return Overlays(found["heatmap"], found["lungs"])
    return None


def remove_overlays(scene: slicer.vtkMRMLScene, radiograph: slicer.vtkMRMLVolumeNode) -> None:
    """Delete this radiograph's overlays (e.g. before showing another study)."""
    for class_name in ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"):
        for node in _nodes(scene, class_name):
            if node.GetAttribute(RADIOGRAPH_ATTRIBUTE) == radiograph.GetID():
                scene.RemoveNode(node)


# ------------------------------------------------------------------------------------------- views
def show_in_views(
    scene: slicer.vtkMRMLScene,
    radiograph: slicer.vtkMRMLVolumeNode,
    heatmap: slicer.vtkMRMLScalarVolumeNode | None = None,
    opacity: float = 0.5,
    view_names: tuple[str, ...] = ("Red",),
) -> int:
    """Radiograph as background and heatmap as foreground in the named slice views, each view turned
    to the radiograph's plane. Returns the number of views set (0: no such view in the scene)."""
    count = 0
    for composite in _nodes(scene, "vtkMRMLSliceCompositeNode"):
        if composite.GetLayoutName() not in view_names:
            continue
        composite.SetBackgroundVolumeID(radiograph.GetID())
        composite.SetForegroundVolumeID(heatmap.GetID() if heatmap is not None else None)
        composite.SetForegroundOpacity(_opacity(opacity))
        count += 1
    for slice_node in _nodes(scene, "vtkMRMLSliceNode"):
        if slice_node.GetLayoutName() in view_names:
            slice_node.RotateToVolumePlane(radiograph)
    return count


def set_heatmap_opacity(scene: slicer.vtkMRMLScene, opacity: float, view_names: tuple[str, ...] = ("Red",)) -> None:
    """Foreground (heatmap) opacity of the named slice views."""
    for composite in _nodes(scene, "vtkMRMLSliceCompositeNode"):
        if composite.GetLayoutName() in view_names:
            composite.SetForegroundOpacity(_opacity(opacity))


def set_lungs_visible(seg_node: slicer.vtkMRMLSegmentationNode | None, visible: bool) -> None:
    if seg_node is not None and seg_node.GetDisplayNode() is not None:
        seg_node.GetDisplayNode().SetVisibility(bool(visible))


def _opacity(value: float) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"opacity must be within [0, 1], got {value!r}")
    return v


def _nodes(scene: slicer.vtkMRMLScene, class_name: str) -> list:
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]
