"""AnatPaste Review: Slicer's Module / Widget / Logic / Test classes. The work is in AnatPasteReviewLib."""

import logging
import os
import socket
import time
import unittest
from typing import Annotated

import numpy as np
import qt
import slicer
import vtk
from AnatPasteReviewLib import scene
from AnatPasteReviewLib.images import encode_png16
from AnatPasteReviewLib.logic import ReviewLogic
from AnatPasteReviewLib.workflow import controls, remember_url, upload_question
from slicer.parameterNodeWrapper import Default, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

SETTINGS_URL = "AnatPasteReview/ServerUrl"
SETTINGS_HISTORY = "AnatPasteReview/ServerUrlHistory"
SETTINGS_DONT_ASK = "AnatPasteReview/DontAskBeforeSending"
SETTINGS_ARCHIVE = "AnatPasteReview/ArchiveUrl"  # the DICOMweb archive; empty: the server's (/info)


class AnatPasteReview(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "AnatPaste Review"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []
        self.parent.contributors = ["AnatPaste contributors"]
        self.parent.helpText = (
            "Score a chest radiograph on an AnatPaste MONAI Label server: anomaly score, normal/abnormal at the "
            "model's threshold, heatmap and lung mask on the image. Confirm normals and retrain the model. Load the "
            "study's AnatPaste reports and lung SEG from the DICOMweb archive. See slicer_extension/README.md."
        )
        self.parent.acknowledgementText = (
            "AnatPaste: self-supervised anomaly detection on chest radiographs, served by MONAI Label."
        )


@parameterNodeWrapper
class AnatPasteReviewParameterNode:
    """GUI state saved with the scene; each field is bound to the .ui widget of that SlicerParameterName."""

    radiograph: slicer.vtkMRMLScalarVolumeNode
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0), Default(0.5)]
    showLungs: Annotated[bool, Default(True)]
    trainSteps: Annotated[int, WithinRange(1, 100000), Default(300)]


class AnatPasteReviewWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    # widget name -> workflow.Controls field
    BUTTONS = {
        "connectButton": "connect",
        "loginButton": "login",
        "openFileButton": "open_file",
        "openDicomButton": "open_file",
        "nextStudyButton": "next_study",
        "scoreButton": "score",
        "rescoreButton": "rescore",
        "normalButton": "confirm_normal",
        "abnormalButton": "confirm_abnormal",
        "trainButton": "start_training",
        "calibrateButton": "start_calibration",
        "stopTrainingButton": "stop_training",
        "archiveButton": "archive_lookup",
    }
    LABELS = {
        "serverStatusLabel": "server_text",
        "scoreLabel": "score_text",
        "newModelLabel": "new_model_text",
        "reviewLabel": "review_text",
        "trainingLabel": "training_text",
        "statusLabel": "status_text",
        "archiveLabel": "archive_text",
    }

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._timer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AnatPasteReview.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = AnatPasteReviewLogic()
        self.logic.session.consent = self._askConsent
        self.logic.session.changed.connect(self._refresh)
        self._loadServerHistory()
        self._connectButtons()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        # Server calls run in worker threads; this timer delivers their answers (and polls training).
        # The short wait inside tick() also lets the workers run if Slicer holds the GIL while idle.
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", lambda: self.logic.session.tick(wait=0.005))
        self._timer.start()
        self.initializeParameterNode()
        self._refresh()

    def _loadServerHistory(self):
        history = slicer.util.settingsValue(SETTINGS_HISTORY, []) or []
        self.ui.serverUrlComboBox.addItems([history] if isinstance(history, str) else list(history))
        self.ui.serverUrlComboBox.setCurrentText(slicer.util.settingsValue(SETTINGS_URL, "http://127.0.0.1:8000"))
        self.ui.archiveUrlLineEdit.text = slicer.util.settingsValue(SETTINGS_ARCHIVE, "") or ""

    def _connectButtons(self):
        ui, logic, session = self.ui, self.logic, self.logic.session
        ui.connectButton.connect("clicked(bool)", self.onConnect)
        ui.loginButton.connect("clicked(bool)", lambda: self._do(session.login, ui.usernameLineEdit.text,
                                                                  ui.passwordLineEdit.text))
        ui.openFileButton.connect("clicked(bool)", self.onOpenFile)
        ui.openDicomButton.connect("clicked(bool)", lambda: slicer.util.selectModule("DICOM"))
        ui.nextStudyButton.connect("clicked(bool)", lambda: self._do(logic.next_study))
        ui.scoreButton.connect("clicked(bool)", lambda: self._do(session.score))
        ui.rescoreButton.connect("clicked(bool)", lambda: self._do(session.score))
        ui.normalButton.connect("clicked(bool)", lambda: self._do(session.confirm, "normal"))
        ui.abnormalButton.connect("clicked(bool)", lambda: self._do(session.confirm, "abnormal"))
        # Retrain = the server's adapt (calibrate, fine-tune, keep the fine-tune only if a check agrees).
        ui.trainButton.connect("clicked(bool)", lambda: self._do(session.start_training, {
            "mode": "adapt", "adapt_steps": self._parameterNode.trainSteps}))
        ui.calibrateButton.connect("clicked(bool)", lambda: self._do(session.start_training, {"mode": "calibrate"}))
        ui.stopTrainingButton.connect("clicked(bool)", lambda: self._do(session.stop_training))
        ui.archiveButton.connect("clicked(bool)", self.onArchive)

    def cleanup(self):
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self.logic.session.set_study(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None):
        self.logic.apply_parameters(self._parameterNode)

    # ------------------------------------------------------------------------------------ actions
    def onConnect(self):
        url = self.ui.serverUrlComboBox.currentText.strip()
        if not self._do(self.logic.session.connect, url):
            return
        url = self.logic.session.state.server_url
        history = remember_url(
            [self.ui.serverUrlComboBox.itemText(i) for i in range(self.ui.serverUrlComboBox.count)], url
        )
        qt.QSettings().setValue(SETTINGS_URL, url)
        qt.QSettings().setValue(SETTINGS_HISTORY, history)
        self.ui.serverUrlComboBox.clear()
        self.ui.serverUrlComboBox.addItems(history)
        self.ui.serverUrlComboBox.setCurrentText(url)

    def onOpenFile(self):
        path = qt.QFileDialog.getOpenFileName(self.parent, "Open a chest radiograph", "",
                                              "Radiographs (*.png *.jpg *.jpeg *.dcm);;All files (*)")
        if path:
            self._do(self.logic.open_file, path)

    def onArchive(self):
        url = self.ui.archiveUrlLineEdit.text.strip()  # the study's AnatPaste objects in the DICOMweb archive
        if self._do(self.logic.look_up_archive, url, self.ui.archiveCaptureCheckBox.checked):
            qt.QSettings().setValue(SETTINGS_ARCHIVE, url)

    def _do(self, action, *args):
        """Run an action; a local error (bad address, unreadable file) goes to the status line."""
        try:
            action(*args)
            return True
        except (ValueError, RuntimeError, OSError) as exc:
            self.logic.session.report_error(str(exc))
            return False

    def _askConsent(self, study, action):
        return slicer.util.confirmOkCancelDisplay(
            upload_question(study, action),
            "AnatPaste: send image data?",
            dontShowAgainSettingsKey=SETTINGS_DONT_ASK,
        )

    def _refresh(self):
        c = controls(self.logic.session.state)
        for name, field in self.BUTTONS.items():
            getattr(self.ui, name).enabled = getattr(c, field)
        for name, field in self.LABELS.items():
            getattr(self.ui, name).text = getattr(c, field)
        self.ui.trainButton.toolTip = c.train_hint
        colour = {"abnormal": "#c0392b", "normal": "#1e8449"}.get(c.verdict, "")
        self.ui.scoreLabel.setStyleSheet(f"font-weight: bold; color: {colour};" if colour else "")
        self.ui.trainingProgressBar.visible = c.training_fraction is not None
        self.ui.trainingProgressBar.value = int(round(100 * (c.training_fraction or 0.0)))


class AnatPasteReviewLogic(ReviewLogic, ScriptedLoadableModuleLogic):
    """AnatPasteReviewLib.logic.ReviewLogic with Slicer's file reader, layout, parameter node and DICOM database.

    ReviewLogic comes first: Slicer's base calls ``super().__init__()`` without arguments, which must reach
    ``object``, not ReviewLogic."""

    def __init__(self, session=None):
        ScriptedLoadableModuleLogic.__init__(self)
        ReviewLogic.__init__(
            self,
            slicer.mrmlScene,
            lambda path: slicer.util.loadVolume(path, {"singleFile": True, "show": False}),
            session=session,
            layout=SlicerLayout(),
            parameters=self.getParameterNode,
            temp_folder=lambda: slicer.util.tempDirectory("AnatPasteReview"),
            dicom_database=lambda: getattr(slicer, "dicomDatabase", None),
        )

    def getParameterNode(self):
        return AnatPasteReviewParameterNode(super().getParameterNode())


class SlicerLayout:
    """The Red slice view alone, fitted (no layout manager when Slicer runs without a main window)."""

    def show_one_view(self):
        manager = slicer.app.layoutManager()
        if manager is not None:
            manager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpRedSliceView)

    def fit(self):
        manager = slicer.app.layoutManager()
        if manager is not None:
            manager.sliceWidget("Red").sliceLogic().FitSliceToAll()


class AnatPasteReviewTest(ScriptedLoadableModuleTest):
    """Self-test inside 3D Slicer (slicer_extension/README.md, "Testing"): Slicer's own PNG reader and the
    overlays' alignment; the widget's rules and a dead server that must not block the GUI; with
    ANATPASTE_SERVER_URL set, next study -> score -> overlays -> confirm normal on a real server."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def _settle(self, session, timeout=300.0):
        deadline = time.monotonic() + timeout
        while session.runner.busy() and time.monotonic() < deadline:
            session.tick(wait=0.02)
            slicer.app.processEvents()  # the GUI keeps running meanwhile
        assert not session.runner.busy(), "a server call did not finish"

    def test_overlays_on_a_loaded_png(self):
        logic = AnatPasteReviewLogic()
        path = os.path.join(slicer.util.tempDirectory("AnatPasteReviewTest"), "chest.png")
        pixels = np.zeros((48, 64))
        pixels[:12] = 1.0  # a bright top band: shows whether rows come out upside down
        with open(path, "wb") as f:
            f.write(encode_png16(pixels))
        volume = logic.open_file(path)
        loaded = scene.radiograph_pixels(volume)
        assert loaded.shape == (48, 64)
        assert loaded[:12].mean() > loaded[12:].mean()  # Slicer's reader: row 0 = top
        heat, mask = np.zeros((48, 64), np.float32), np.zeros((48, 64), bool)
        heat[2:8, 3:9], mask[20:40, 30:60] = 5.0, True
        overlays = scene.show_result(slicer.mrmlScene, volume, heat, mask, 5.0)
        ijk = [vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()]
        volume.GetIJKToRASMatrix(ijk[0])
        overlays.heatmap.GetIJKToRASMatrix(ijk[1])
        a, b = (slicer.util.arrayFromVTKMatrix(m) for m in ijk)
        assert np.allclose(a, b)
        assert np.array_equal(scene.lung_mask_array(overlays.lungs, volume), mask)
        red = [n for n in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode") if n.GetLayoutName() == "Red"]
        if not red:  # --no-main-window: no slice views, so give the scene a Red one
            red = [slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")]
            red[0].SetLayoutName("Red")
        logic.show(volume)
        assert red[0].GetBackgroundVolumeID() == volume.GetID()
        assert red[0].GetForegroundVolumeID() == overlays.heatmap.GetID()

    def test_widget_controls_and_dead_server(self):
        widget = slicer.modules.anatpastereview.widgetRepresentation().self()
        session = widget.logic.session
        assert not widget.ui.scoreButton.enabled
        assert widget.ui.connectButton.enabled
        with socket.socket() as s:  # a port where nothing listens
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t0 = time.monotonic()
        session.connect(f"http://127.0.0.1:{port}")
        assert time.monotonic() - t0 < 0.5  # the connect runs in the background
        self._settle(session, 15.0)
        assert not session.state.connected
        assert "connection refused" in widget.ui.statusLabel.text

    def test_real_server_round_trip(self):
        url = os.environ.get("ANATPASTE_SERVER_URL")
        if not url:
            self.skipTest("set ANATPASTE_SERVER_URL to run against a server")
        logic = AnatPasteReviewLogic()
        logic.session.connect(url)
        self._settle(logic.session)
        assert logic.session.state.info.model_available, logic.session.state.error
        logic.next_study()
        self._settle(logic.session)  # downloads, opens, then scores the study by id
        state = logic.session.state
        assert state.result is not None, state.error
        assert scene.overlays_of(slicer.mrmlScene, slicer.mrmlScene.GetNodeByID(state.study.volume_id)) is not None
        logging.info(f"scored {state.study.name}: {state.result}")
        logic.session.confirm("normal")
        self._settle(logic.session)
        assert logic.session.state.review == "normal", logic.session.state.error

    def runTest(self):  # "Reload and Test" in Slicer
        for name in ("test_overlays_on_a_loaded_png", "test_widget_controls_and_dead_server",
                     "test_real_server_round_trip"):
            self.setUp()
            try:
                getattr(self, name)()
            except unittest.SkipTest as skip:
                self.delayDisplay(f"{name}: not run ({skip})")
