"""Render the README screenshot through 3D Slicer's own MRML slice pipeline, offscreen (slicer-core + VTK).

A real radiograph is scored by a running AnatPaste server (upload, ``output=all``), and the result is put
in an MRML scene by the extension's scene layer (``AnatPasteReviewLib.scene``), exactly as the module does
inside Slicer. A slice logic, the segmentation displayable manager and an offscreen render window then draw
the Red slice view: radiograph, heatmap foreground, lung segmentation. The module's Qt panel is not drawn
(no Qt here); the score line is written into the view as a corner annotation.

Usage (repository root, project venv, a server running)::

    .venv/bin/python slicer_extension/tools/render_screenshot.py --server http://127.0.0.1:8000 \\
        --image /work/shared/data/dicom/siim_cr_chest_mono2_jpeg.dcm \\
        --output slicer_extension/docs/screenshot.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "AnatPasteReview"))

from AnatPasteReviewLib import scene as scene_layer  # noqa: E402
from AnatPasteReviewLib.client import AnatPasteClient, Timeouts  # noqa: E402
from AnatPasteReviewLib.images import read_result_maps  # noqa: E402


class OffscreenSliceView:
    """One slice view ("Red", axial) of an MRML scene, rendered offscreen with Slicer's slice logic.

    Args:
        scene: the MRML scene.
        size: (width, height) in pixels.
        name: the view's layout name (composite and slice nodes of that name drive it).
    """

    def __init__(self, scene: slicer.vtkMRMLScene, size: tuple[int, int] = (800, 800), name: str = "Red"):
        self.scene = scene
        self.size = size
        self.app_logic = slicer.vtkMRMLApplicationLogic()
        self.app_logic.SetMRMLScene(scene)
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.color_logic = slicer.vtkSlicerColorLogic()  # the scene's default colour tables
        self.color_logic.SetMRMLApplicationLogic(self.app_logic)
        self.color_logic.SetMRMLScene(scene)
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetSize(*size)
        self.renderer = vtk.vtkRenderer()
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()  # displayable managers need one
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()
        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(self.app_logic)
        if not factory.IsDisplayableManagerRegistered("vtkMRMLSegmentationsDisplayableManager2D"):
            factory.RegisterDisplayableManager("vtkMRMLSegmentationsDisplayableManager2D")
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.SetRenderer(self.renderer)
        self.managers.Initialize(factory, self.renderer)
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(self.app_logic)
        self.logic.SetMRMLScene(scene)
        self.app_logic.GetSliceLogics().AddItem(self.logic)
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
        self.slice_node = self.logic.AddSliceNode(name)
        self.slice_node.SetOrientation("Axial")
        self.managers.SetMRMLDisplayableNode(self.slice_node)
        # The blended slice image (all volume layers), drawn behind the displayable managers' actors.
        self.mapper = vtk.vtkImageMapper()
        self.mapper.SetColorWindow(255)
        self.mapper.SetColorLevel(127.5)
        self.image_actor = vtk.vtkActor2D()
        self.image_actor.SetMapper(self.mapper)
        self.image_actor.GetProperty().SetDisplayLocationToBackground()
        self.renderer.AddViewProp(self.image_actor)
        self.text = vtk.vtkCornerAnnotation()
        self.text.GetTextProperty().SetColor(1.0, 1.0, 1.0)
        self.text.GetTextProperty().SetBackgroundColor(0.0, 0.0, 0.0)
        self.text.GetTextProperty().SetBackgroundOpacity(0.65)
        self.text.SetMaximumFontSize(22)
        self.renderer.AddViewProp(self.text)

    def fit(self) -> None:
        """Fill the view with the background volume (as Slicer's "fit to window")."""
        w, h = self.size
        self.logic.ResizeSliceNode(w, h)
        self.logic.FitSliceToAll(w, h)

    def annotate(self, lower_left: str = "", upper_left: str = "") -> None:
        self.text.SetText(0, lower_left)
        self.text.SetText(2, upper_left)

    def render(self) -> np.ndarray:
        """The view as uint8 RGB (height, width, 3), row 0 at the top."""
        self.mapper.SetInputConnection(self.logic.GetImageDataConnection())
        self.window.Render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        w, h, _ = image.GetDimensions()
        rgb = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)[..., :3]
        return np.ascontiguousarray(rgb[::-1])


def render_result(pixels, spacing, maps, caption: str, size=(800, 800), opacity: float = 0.6) -> np.ndarray:
    """Radiograph + heatmap + lung segmentation in an offscreen Red slice view, as the module shows them."""
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    view = OffscreenSliceView(scene, size)
    radiograph = scene_layer.volume_from_array(scene, pixels, spacing, name="radiograph")
    overlays = scene_layer.show_result(
        scene, radiograph, maps.heatmap, maps.lung_mask, maps.display_max, maps.coloured
    )
    scene_layer.show_in_views(scene, radiograph, overlays.heatmap, opacity)
    view.fit()
    view.annotate(lower_left=caption)
    return view.render()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="a running AnatPaste server, e.g. http://127.0.0.1:8000")
    p.add_argument("--image", required=True, help="PNG/JPEG/DICOM radiograph to upload and score")
    p.add_argument("--output", required=True, help="PNG to write")
    p.add_argument("--size", type=int, default=800)
    p.add_argument("--opacity", type=float, default=0.6)
    args = p.parse_args(argv)

    from PIL import Image

    from anatpaste.io import read_radiograph  # the server's own reader: the same pixel grid

    radiograph = read_radiograph(args.image)
    result = AnatPasteClient(args.server, timeouts=Timeouts(read=300, total=600)).score(path=args.image)
    maps = read_result_maps(result.maps_nrrd, result.shape)
    maps = _Maps(maps.heatmap, maps.lung_mask, result.heatmap_display_max, result.heatmap_coloured)
    verdict = "ABNORMAL" if result.abnormal else "normal"
    caption = (
        f"{Path(args.image).name}: score {result.score:.2f} (threshold {result.threshold:.2f}) {verdict}\n"
        f"model {result.model_version} - heatmap opacity {args.opacity:.1f} - lung mask outline"
    )
    rgb = render_result(radiograph.pixels, radiograph.spacing, maps, caption, (args.size, args.size), args.opacity)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(args.output)
    print(f"{args.output}: {caption}")
    return 0


class _Maps:
    def __init__(self, heatmap, lung_mask, display_max, coloured=True):
        self.heatmap, self.lung_mask, self.display_max, self.coloured = heatmap, lung_mask, display_max, coloured


if __name__ == "__main__":
    raise SystemExit(main())
