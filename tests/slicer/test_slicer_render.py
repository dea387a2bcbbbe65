"""What the reviewer sees: the overlays drawn by Slicer's own slice pipeline (slicer-core, VTK offscreen),
checked pixel by pixel against the radiograph drawn alone, for a plain and an oblique geometry."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from AnatPasteReviewLib import scene as S
from render_screenshot import OffscreenSliceView
from slicer_fake_server import test_maps
from test_slicer_scene import OBLIQUE, set_matrix

SHAPE = (96, 128)
SIZE = (256, 192)  # the volume fills the view at 2 px per pixel


def draw(pixels, geometry, heat=None, mask=None, opacity=1.0) -> np.ndarray:
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    view = OffscreenSliceView(scene, SIZE)
    rad = S.volume_from_array(scene, pixels)
    if geometry == "oblique":
        set_matrix(rad, OBLIQUE)
    heat_node = None
    if heat is not None:
        overlays = S.show_result(scene, rad, heat, mask, display_max=2.5)  # heat 5.0 = full colour
        heat_node = overlays.heatmap
    S.show_in_views(scene, rad, heat_node, opacity)
    view.fit()
    rgb = view.render().astype(int)
    scene.Clear(1)
    return rgb


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("geometry", ["png", "oblique"])
def test_heatmap_and_lungs_land_on_the_radiographs_pixels(geometry):
    heat, mask = test_maps(SHAPE)
    # Reference: the radiograph alone, bright exactly where the heat square / the lung mask are.
    ref_heat = draw((heat > 0).astype(np.float32), geometry).sum(-1) > 300
    ref_mask = draw(mask.astype(np.float32), geometry).sum(-1) > 300
    assert ref_heat.sum() > 1000
    assert ref_mask.sum() > 4000
    # The overlays on a black radiograph.
    rgb = draw(np.zeros(SHAPE, np.float32), geometry, heat, mask)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    yellow = (r > 200) & (g > 200) & (b < 60)  # heat 5.0 = twice display_max: the table's top, yellow
    assert iou(yellow, ref_heat) > 0.9
    teal = (g > r + 10) & (b > r + 10)  # lung fill and outline, the segment's cyan
    assert iou(teal, ref_mask) > 0.85
    outline = (g > 150) & (b > 150) & (r < 100)
    assert outline.sum() > 200  # the bright cyan outline is drawn
    assert (outline & ~np.pad(ref_mask, 3)[3:-3, 3:-3]).sum() < 0.05 * outline.sum()  # on the lung border


def test_radiograph_is_upright_and_unmirrored():
    pixels = np.zeros(SHAPE, np.float32)
    pixels[:24] = 1.0  # top band
    pixels[:, :16] = 0.5  # left band
    rgb = draw(pixels, "png")
    grey = rgb.mean(-1)
    assert grey[10, 200] > 200  # the top band is at the top
    assert grey[150, 200] < 30
    assert 90 < grey[150, 10] < 170  # the left band is on the left
    assert grey[150, 250] < 30


def test_low_heat_is_transparent_and_opacity_applies():
    pixels = np.full(SHAPE, 0.5, np.float32)
    pixels[0, 0] = 1.0  # a window that keeps 0.5 mid-grey
    heat = np.zeros(SHAPE, np.float32)
    heat[:, 64:] = 5.0
    heat[:, :32] = 2.0  # below display_max (2.5, what normal images reach): not drawn
    plain = draw(pixels, "png")
    rgb = draw(pixels, "png", heat, np.zeros(SHAPE, bool), opacity=0.5)
    np.testing.assert_allclose(rgb[100, 20], plain[100, 20], atol=3)  # low heat: the radiograph unchanged
    hot = rgb[100, 200]
    expected = 0.5 * np.array([255, 255, 0]) + 0.5 * plain[100, 200]  # half yellow, half radiograph
    np.testing.assert_allclose(hot, expected, atol=12)
