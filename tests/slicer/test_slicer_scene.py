"""The scene layer on real MRML (slicer-core): single-slice radiographs, the heatmap overlay, the lung
segmentation, and their alignment with the radiograph whatever its geometry."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk
from AnatPasteReviewLib import scene as S
from slicer_fake_server import test_maps


def matrix(volume) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def set_matrix(volume, a: np.ndarray) -> None:
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    volume.SetIJKToRASMatrix(m)


def ras_of(volume, i: float, j: float) -> np.ndarray:
    return (matrix(volume) @ np.array([i, j, 0.0, 1.0]))[:3]


# A DICOM-like geometry: rotated in-plane, tilted out of the axial plane, with an origin.
theta = np.deg2rad(20)
OBLIQUE = np.array(
    [
        [-0.3 * np.cos(theta), 0.2 * np.sin(theta), 0.1, 12.0],
        [0.0, 0.0, -1.0, -40.0],
        [-0.3 * np.sin(theta), -0.2 * np.cos(theta), 0.0, 7.5],
        [0, 0, 0, 1],
    ]
)


def test_single_slice_volume_has_slicers_2d_geometry(mrml):
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    vol = S.volume_from_array(mrml, img, spacing=(0.5, 0.25), name="chest")
    assert S.radiograph_shape(vol) == (3, 4)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(vol), img[None])
    np.testing.assert_allclose(matrix(vol), np.diag([-0.25, -0.5, 1.0, 1.0]))
    np.testing.assert_array_equal(S.radiograph_pixels(vol), img)
    assert vol.GetDisplayNode() is not None
    assert vol.GetName() == "chest"
    with pytest.raises(S.SceneError, match="2-D image"):
        S.volume_from_array(mrml, np.zeros((2, 3, 4)))


def test_multi_slice_volume_is_not_a_radiograph(mrml):
    vol = mrml.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    slicer.util.updateVolumeFromArray(vol, np.zeros((3, 4, 5), np.float32))
    with pytest.raises(S.SceneError, match="3 slices"):
        S.radiograph_shape(vol)
    with pytest.raises(S.SceneError, match="no image data"):
        S.radiograph_shape(mrml.AddNewNodeByClass("vtkMRMLScalarVolumeNode"))


def test_colour_picture_becomes_grey_with_same_geometry(mrml):
    rgb = mrml.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "jpeg")
    a = np.zeros((1, 4, 5, 3), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = 30, 60, 90
    slicer.util.updateVolumeFromArray(rgb, a)
    set_matrix(rgb, OBLIQUE)
    grey = S.as_scalar_radiograph(mrml, rgb)
    assert grey is not rgb
    assert grey.IsA("vtkMRMLScalarVolumeNode")
    np.testing.assert_allclose(S.radiograph_pixels(grey), np.full((4, 5), 60.0))
    np.testing.assert_allclose(matrix(grey), OBLIQUE)
    scalar = S.volume_from_array(mrml, np.zeros((4, 5)))
    assert S.as_scalar_radiograph(mrml, scalar) is scalar


@pytest.mark.parametrize("geometry", ["png", "oblique"])
def test_overlays_are_aligned_with_the_radiograph(mrml, geometry):
    shape = (48, 64)
    rad = S.volume_from_array(mrml, np.random.default_rng(0).random(shape), spacing=(0.4, 0.3))
    if geometry == "oblique":
        set_matrix(rad, OBLIQUE)
    heat, mask = test_maps(shape)
    ov = S.show_result(mrml, rad, heat, mask, display_max=5.0)
    np.testing.assert_allclose(matrix(ov.heatmap), matrix(rad))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ov.heatmap)[0], heat)
    np.testing.assert_array_equal(S.lung_mask_array(ov.lungs, rad), mask)
    # The hot square's first pixel (row h//8, col w//8) sits at the same RAS point in both volumes.
    j, i = np.argwhere(heat > 0)[0]
    np.testing.assert_allclose(ras_of(ov.heatmap, i, j), ras_of(rad, i, j))
    assert ov.heatmap.GetAttribute(S.RADIOGRAPH_ATTRIBUTE) == rad.GetID()
    assert S.is_overlay(ov.heatmap)
    assert S.is_overlay(ov.lungs)
    assert not S.is_overlay(rad)
    segment = ov.lungs.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "Lungs"
    assert ov.lungs.GetSegmentation().GetNumberOfSegments() == 1
    assert mrml.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0  # the temporary one is gone


def test_heatmap_display(mrml):
    rad = S.volume_from_array(mrml, np.zeros((8, 8)))
    heat = np.linspace(0, 6, 64, dtype=np.float32).reshape(8, 8)
    ov = S.show_result(mrml, rad, heat, np.zeros((8, 8), bool), display_max=4.0)
    d = ov.heatmap.GetDisplayNode()
    color = mrml.GetNodeByID(d.GetColorNodeID())
    assert color.GetName() == S.HEAT_COLOR_NAME
    assert color.GetNumberOfColors() == 256
    rgba_low, rgba_high = [0.0] * 4, [0.0] * 4
    color.GetColor(0, rgba_low)
    color.GetColor(255, rgba_high)
    assert rgba_low[3] == 0.0
    assert rgba_high == [1.0, 1.0, 0.0, 1.0]  # yellow, opaque
    assert (d.GetWindowLevelMin(), d.GetWindowLevelMax()) == pytest.approx((4.0, 8.0))
    assert d.GetApplyThreshold()
    assert d.GetLowerThreshold() == pytest.approx(4.0)  # the 99th percentile of normal heat
    assert ov.lungs.GetSegmentation().GetNumberOfSegments() == 0  # an empty mask: no segment
    S.show_result(mrml, rad, heat, np.ones((8, 8), bool))
    assert mrml.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 1  # one heat table per scene


def test_a_film_below_the_threshold_gets_its_heatmap_loaded_but_transparent(mrml):
    rad = S.volume_from_array(mrml, np.zeros((8, 8)))
    heat = np.linspace(0, 6, 64, dtype=np.float32).reshape(8, 8)
    ov = S.show_result(mrml, rad, heat, np.zeros((8, 8), bool), display_max=4.0, coloured=False)
    d = ov.heatmap.GetDisplayNode()
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ov.heatmap)[0], heat)  # there, for who looks
    assert d.GetApplyThreshold() and d.GetLowerThreshold() > heat.max()  # but no pixel passes the threshold
    assert (d.GetWindowLevelMin(), d.GetWindowLevelMax()) == pytest.approx((4.0, 8.0))
    S.show_result(mrml, rad, heat, np.zeros((8, 8), bool), display_max=4.0)  # re-scored and flagged: colour
    assert d.GetLowerThreshold() == pytest.approx(4.0)


def test_rescore_reuses_the_nodes(mrml):
    rad = S.volume_from_array(mrml, np.zeros((10, 12)))
    heat, mask = test_maps((10, 12))
    first = S.show_result(mrml, rad, heat, mask)
    second = S.show_result(mrml, rad, heat * 2, ~mask)
    assert second.heatmap.GetID() == first.heatmap.GetID()
    assert second.lungs.GetID() == first.lungs.GetID()
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(second.heatmap)[0], heat * 2)
    np.testing.assert_array_equal(S.lung_mask_array(second.lungs, rad), ~mask)
    assert S.overlays_of(mrml, rad).heatmap.GetID() == first.heatmap.GetID()
    other = S.volume_from_array(mrml, np.zeros((10, 12)))
    assert S.overlays_of(mrml, other) is None
    S.remove_overlays(mrml, rad)
    assert S.overlays_of(mrml, rad) is None
    assert mrml.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_maps_of_another_size_are_refused(mrml):
    rad = S.volume_from_array(mrml, np.zeros((10, 12)))
    with pytest.raises(S.SceneError, match="maps are 12x10 pixels but .* is 10x12"):
        S.show_result(mrml, rad, np.zeros((12, 10)), np.zeros((12, 10), bool))


def slice_view(scene, name="Red"):
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    sn = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    sn.SetLayoutName(name)
    sn.SetOrientation("Axial")
    comp = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    comp.SetLayoutName(name)
    return sn, comp


def test_views_show_radiograph_heatmap_and_turn_to_its_plane(mrml):
    red, red_comp = slice_view(mrml, "Red")
    green, green_comp = slice_view(mrml, "Green")
    rad = S.volume_from_array(mrml, np.zeros((10, 12)))
    set_matrix(rad, OBLIQUE)
    ov = S.show_result(mrml, rad, *test_maps((10, 12)))
    assert S.show_in_views(mrml, rad, ov.heatmap, opacity=0.4) == 1
    assert (red_comp.GetBackgroundVolumeID(), red_comp.GetForegroundVolumeID()) == (
        rad.GetID(),
        ov.heatmap.GetID(),
    )
    assert red_comp.GetForegroundOpacity() == pytest.approx(0.4)
    assert green_comp.GetBackgroundVolumeID() is None
    # the Red view now looks along the radiograph's k axis
    s2r = red.GetSliceToRAS()
    normal = np.array([s2r.GetElement(r, 2) for r in range(3)])
    k_axis = np.cross(OBLIQUE[:3, 0], OBLIQUE[:3, 1])
    assert abs(np.dot(normal, k_axis / np.linalg.norm(k_axis))) == pytest.approx(1.0)
    S.set_heatmap_opacity(mrml, 0.8)
    assert red_comp.GetForegroundOpacity() == pytest.approx(0.8)
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        S.set_heatmap_opacity(mrml, 1.5)
    S.set_lungs_visible(ov.lungs, False)
    assert not ov.lungs.GetDisplayNode().GetVisibility()
    S.set_lungs_visible(None, True)  # no segmentation yet: nothing to do


class FakeDicomDatabase:
    def __init__(self, files):
        self.files = files

    def fileForInstance(self, uid):  # noqa: N802 - ctkDICOMDatabase's name
        return self.files.get(uid, "")


def test_study_source(mrml, tmp_path):
    vol = S.volume_from_array(mrml, np.zeros((4, 4)))
    assert S.study_source(vol) == ("scene", None)
    png = tmp_path / "a.png"
    png.write_bytes(b"x")
    storage = mrml.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(png))
    vol.SetAndObserveStorageNodeID(storage.GetID())
    assert S.study_source(vol) == ("file", str(png))
    dcm = tmp_path / "1.2.3"
    dcm.write_bytes(b"x")
    vol.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    assert S.study_source(vol, FakeDicomDatabase({"1.2.3": str(dcm)})) == ("dicom", str(dcm))
    assert S.study_source(vol, FakeDicomDatabase({})) == ("file", str(png))


def test_export_png_of_a_scene_only_volume(mrml, tmp_path):
    from PIL import Image

    pixels = np.arange(12, dtype=np.float32).reshape(3, 4)
    vol = S.volume_from_array(mrml, pixels, name="chest / 2 ?")
    path = S.export_png(vol, str(tmp_path))
    assert path == str(tmp_path / "chest_2.png")
    got = np.asarray(Image.open(path)).astype(float) / 65535
    np.testing.assert_allclose(got, pixels / 11, atol=1e-4)
