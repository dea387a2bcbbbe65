"""The module file's Logic (AnatPasteReview.py) on slicer-core, with only 3D Slicer's application mocked.

Mocked, because slicer-core lacks them: ``qt``, ``slicer.ScriptedLoadableModule`` (its Logic base copied
in behaviour: ``__init__`` calls ``super().__init__()``, one parameter node per scene),
``slicer.parameterNodeWrapper``, ``slicer.app.layoutManager()`` and ``slicer.util.loadVolume``. The scene
and everything below the Logic are real. The Widget needs Qt and runs only in the in-Slicer self-test.
"""

from __future__ import annotations

import importlib
import sys
import types
from unittest import mock

import numpy as np
import pytest
import slicer
from AnatPasteReviewLib import scene as S


class _SlicerLogicBase:
    """Slicer's ScriptedLoadableModuleLogic as far as the module relies on it."""

    def __init__(self, parent=None):
        super().__init__()  # as Slicer's: this must reach object, not the Lib's ReviewLogic
        self.moduleName = self.__class__.__name__.removesuffix("Logic")

    def getParameterNode(self):  # noqa: N802 - Slicer's name
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node = slicer.mrmlScene.AddNode(node)
        return node


def _parameter_node_wrapper(cls):
    """Typed fields stored per parameter node (Slicer keeps them in the node's parameters)."""
    defaults = {"radiograph": None, "heatmapOpacity": 0.5, "showLungs": True, "trainSteps": 300}
    store: dict[str, dict] = {}

    class Wrapper:
        def __init__(self, node):
            object.__setattr__(self, "_values", store.setdefault(node.GetID(), dict(defaults)))

        def __getattr__(self, name):
            return self._values[name]

        def __setattr__(self, name, value):
            self._values[name] = value

    return Wrapper


@pytest.fixture
def shell(monkeypatch, mrml):
    base = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest"):
        setattr(base, name, type(name, (), {}))
    base.ScriptedLoadableModuleLogic = _SlicerLogicBase
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = _parameter_node_wrapper
    wrapper.Default = wrapper.WithinRange = lambda *a: None
    monkeypatch.setitem(sys.modules, "qt", mock.MagicMock())
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", base)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.setattr(slicer, "app", mock.MagicMock(), raising=False)
    monkeypatch.setattr(slicer.util, "loadVolume", mock.MagicMock(), raising=False)
    monkeypatch.delitem(sys.modules, "AnatPasteReview", raising=False)
    yield importlib.import_module("AnatPasteReview")
    sys.modules.pop("AnatPasteReview", None)


def test_the_module_logic_uses_slicers_reader_layout_and_parameter_node(shell, mrml, tmp_path):
    radiograph = S.volume_from_array(mrml, np.zeros((8, 8), np.float32), name="chest")
    slicer.util.loadVolume.return_value = radiograph
    logic = shell.AnatPasteReviewLogic()
    assert logic.scene is mrml
    path = str(tmp_path / "chest.png")
    assert logic.open_file(path) is radiograph
    slicer.util.loadVolume.assert_called_once_with(path, {"singleFile": True, "show": False})
    manager = slicer.app.layoutManager.return_value
    manager.setLayout.assert_called_with(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)
    manager.sliceWidget.assert_called_with("Red")
    manager.sliceWidget.return_value.sliceLogic.return_value.FitSliceToAll.assert_called()
    assert logic.getParameterNode().radiograph is radiograph  # kept in the scene's parameter node
    assert logic.session.state.study.volume_id == radiograph.GetID()


def test_no_layout_manager_without_a_main_window(shell, mrml, tmp_path):
    slicer.app.layoutManager.return_value = None  # Slicer --no-main-window
    slicer.util.loadVolume.return_value = S.volume_from_array(mrml, np.zeros((8, 8), np.float32))
    logic = shell.AnatPasteReviewLogic()
    logic.open_file(str(tmp_path / "chest.png"))
    assert logic.session.state.study is not None
