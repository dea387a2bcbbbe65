"""Pure rules (what is enabled when) and the background runner that keeps the GUI thread free."""

from __future__ import annotations

import threading
import time

import pytest
from AnatPasteReviewLib.client import ScoreResult, ServerInfo, TrainingStatus
from AnatPasteReviewLib.tasks import TaskRunner
from AnatPasteReviewLib.workflow import (
    LOAD,
    REVIEW,
    SCORE,
    STOP,
    TRAIN,
    ReviewState,
    Study,
    controls,
    poll_interval,
    remember_url,
    training_text,
    upload_question,
)


def info(version="v1", model=True, trainer=True, training=None) -> ServerInfo:
    return ServerInfo(
        name="AnatPaste",
        models=("anatpaste",) if model else ("other",),
        model_available=model,
        model_version=version if model else None,
        threshold=2.5,
        image_size=64,
        trainer_available=trainer,
        training=training or TrainingStatus(),
    )


def result(version="v1", label="abnormal") -> ScoreResult:
    return ScoreResult(score=3.25, label=label, threshold=2.5, model_version=version)


def ready_state(**changes) -> ReviewState:
    s = ReviewState(
        server_url="http://h:1",
        connected=True,
        info=info(),
        training=TrainingStatus(new_confirmed_normals=2),
        study=Study("a.png", "server", image_id="a"),
    )
    for k, v in changes.items():
        setattr(s, k, v)
    return s


def test_nothing_but_connect_and_open_when_disconnected():
    c = controls(ReviewState())
    assert c.connect
    assert c.open_file
    assert not any(
        [
            c.login,
            c.next_study,
            c.score,
            c.confirm_normal,
            c.confirm_abnormal,
            c.start_training,
            c.stop_training,
            c.rescore,
        ]
    )
    assert c.server_text == "Not connected."
    assert poll_interval(ReviewState()) is None


def test_server_line_shows_models_version_and_training():
    s = ready_state()
    assert controls(s).server_text == "http://h:1 - model anatpaste v1 - idle"
    s.info = ServerInfo(**{**s.info.__dict__, "models": ("anatpaste", "deepedit")})
    s.training = TrainingStatus(status="RUNNING")
    assert controls(s).server_text == "http://h:1 - model anatpaste v1 (also: deepedit) - training"


def test_login_gates_everything_on_an_auth_server():
    s = ready_state(auth_enabled=True)
    c = controls(s)
    assert c.login
    assert not c.score
    assert not c.next_study
    assert not c.start_training
    assert "log in" in c.server_text
    s.logged_in = True
    c = controls(s)
    assert not c.login
    assert c.score
    assert c.next_study


def test_score_needs_study_and_model_and_no_score_in_flight():
    assert controls(ready_state()).score
    assert not controls(ready_state(study=None)).score
    assert not controls(ready_state(info=info(model=False))).score
    assert not controls(ready_state(busy={SCORE})).score
    assert not controls(ready_state(busy={LOAD})).score
    assert "no AnatPaste model (models: other)" in controls(ready_state(info=info(model=False))).server_text


def test_confirm_buttons_follow_the_stored_review():
    c = controls(ready_state())
    assert c.confirm_normal
    assert c.confirm_abnormal
    assert c.review_text == "Not reviewed."
    c = controls(ready_state(review="normal"))
    assert not c.confirm_normal
    assert c.confirm_abnormal
    assert "Confirmed normal" in c.review_text
    c = controls(ready_state(review="abnormal"))
    assert c.confirm_normal
    assert not c.confirm_abnormal
    c = controls(ready_state(busy={REVIEW}))
    assert not c.confirm_normal
    assert not c.confirm_abnormal
    assert c.review_text == "Saving review ..."


def test_local_studies_can_be_reviewed_after_upload():
    s = ready_state(study=Study("chest.png", "file", path="/x/chest.png"))
    assert s.study.needs_upload
    assert controls(s).confirm_normal


def test_training_needs_new_normals_and_nothing_running():
    assert controls(ready_state()).start_training
    assert "2 new confirmed normals" in controls(ready_state()).train_hint
    c = controls(ready_state(training=TrainingStatus(new_confirmed_normals=0)))
    assert not c.start_training
    assert "confirm normal studies first" in c.train_hint
    running = TrainingStatus(status="RUNNING", step=3, total=10, new_confirmed_normals=2)
    c = controls(ready_state(training=running))
    assert not c.start_training
    assert c.stop_training
    assert c.train_hint == "Training is running."
    assert c.training_fraction == pytest.approx(0.3)
    assert not controls(ready_state(busy={TRAIN})).start_training
    assert not controls(ready_state(training=running, busy={STOP})).stop_training
    assert not controls(ready_state(info=info(trainer=False))).start_training


def test_new_model_version_offers_rescore():
    s = ready_state(result=result("v1"))
    assert not controls(s).rescore
    assert controls(s).new_model_text == ""
    s.info = info("v2")
    c = controls(s)
    assert c.rescore
    assert "new model (v2)" in c.new_model_text
    s.busy = {SCORE}
    assert not controls(s).rescore


def test_score_and_training_texts():
    c = controls(ready_state(result=result()))
    assert c.score_text == "Score 3.25 (threshold 2.50): ABNORMAL - model v1"
    assert c.verdict == "abnormal"
    assert training_text(None) == "No training yet."
    t = TrainingStatus(status="RUNNING", step=20, total=200, loss=0.4567, synthetic_auc=0.912)
    assert training_text(t) == "Training - step 20/200 - loss 0.457 - synthetic-anomaly AUC 0.912"
    assert "failed the gate" in training_text(TrainingStatus(status="DONE", outcome="rejected"))
    assert training_text(TrainingStatus(status="DONE", published_version="v3")).endswith("published v3")
    assert training_text(TrainingStatus(status="ERROR", message="boom")) == "Training failed: boom"


def test_site_adaptation_texts_show_the_verdict_and_its_figures():
    cal = TrainingStatus(status="DONE", mode="calibrate", published_version="calibrate-1", expected_fpr=0.0486,
                         fpr_interval=(0.0258, 0.0771))
    assert training_text(cal) == (
        "Calibration finished - published calibrate-1 - expected false-positive rate 4.9 % (90 %: 2.6-7.7 %)"
    )
    assert training_text(TrainingStatus(status="RUNNING", mode="calibrate")) == "Calibrating"
    again = TrainingStatus(status="DONE", mode="calibrate", published_version="calibrate-2", expected_fpr=0.05,
                           seen_left_out=32, threshold_warning=None)
    assert training_text(again).endswith("; 32 normals the model had trained on left out of the threshold")
    warned = TrainingStatus.from_json({"status": "DONE", "mode": "calibrate", "published_version": "calibrate-3",
                                       "expected_fpr": 0.05, "threshold_warning": "too few new normals"})
    assert training_text(warned).endswith(" - warning: too few new normals")
    adapted = TrainingStatus(status="DONE", mode="adapt", step=300, total=300, published_version="adapt-2",
                             adapt_chosen="calibrated", acceptance_auc=0.81, acceptance_published_auc=0.78)
    text = training_text(adapted)
    assert text.startswith("Training finished (adapt) - step 300/300 - published adapt-2")
    assert "fine-tune not better: calibrated only" in text
    assert text.endswith("acceptance-set AUC 0.810 vs published 0.780")
    refused = TrainingStatus(status="DONE", mode="adapt", outcome="rejected", acceptance_auc=0.6,
                             acceptance_published_auc=0.8, gate_reason="acceptance set: AUC 0.600 is worse")
    text = training_text(refused)
    assert "failed the gate (acceptance set: AUC 0.600 is worse); the published model is unchanged" in text
    assert "published adapt" not in text


def test_training_status_reads_the_gate_verdict_from_train_stats():
    stats = {"status": "DONE", "outcome": "rejected", "mode": "calibrate", "expected_fpr": 0.05,
             "fpr_interval": [0.02, 0.08], "adapt_chosen": None,
             "gate": {"passed": False, "reason": "acceptance set: worse",
                      "acceptance": {"candidate": {"auc": 0.5}, "current": {"auc": 0.9}}}}
    t = TrainingStatus.from_json(stats)
    assert (t.mode, t.gate_reason, t.acceptance_auc, t.acceptance_published_auc) == (
        "calibrate", "acceptance set: worse", 0.5, 0.9)
    assert t.fpr_interval == (0.02, 0.08) and t.expected_fpr == 0.05
    odd = TrainingStatus.from_json({"status": "DONE", "gate": "no", "fpr_interval": [1]})
    assert odd.gate_reason is None and odd.fpr_interval is None


def test_poll_interval_fast_while_training():
    assert poll_interval(ready_state()) == 20.0
    assert poll_interval(ready_state(training=TrainingStatus(status="RUNNING"))) == 2.0
    assert poll_interval(ready_state(busy={TRAIN})) == 2.0


def test_upload_question_says_what_leaves_the_computer():
    assert "DICOM file, including its header" in upload_question(Study("x", "dicom", path="/d/1"))
    local = Study("chest.png", "file", path="/d/chest.png")
    assert upload_question(local).startswith("Scoring sends the image 'chest.png' to the AnatPaste server.")
    assert "where it stays" in upload_question(local, "store")
    with pytest.raises(ValueError, match="action"):
        upload_question(local, "print")


def test_url_history():
    h = remember_url(["http://a", "http://b"], "http://b")
    assert h == ["http://b", "http://a"]
    assert remember_url([f"http://{i}" for i in range(20)], "http://new", limit=3) == [
        "http://new",
        "http://0",
        "http://1",
    ]
    with pytest.raises(ValueError, match="source"):
        Study("x", "usb")


# ------------------------------------------------------------------------------------ TaskRunner
def test_callbacks_run_on_the_polling_thread_and_poll_never_blocks():
    runner = TaskRunner()
    release = threading.Event()
    seen = []
    runner.submit(
        "slow",
        lambda: release.wait(5) and threading.get_ident(),
        on_done=lambda worker: seen.append((worker, threading.get_ident())),
    )
    t0 = time.monotonic()
    assert runner.poll() == 0
    assert runner.poll(wait=0.05) == 0
    assert time.monotonic() - t0 < 0.5
    assert runner.busy("slow")
    assert runner.busy()
    with pytest.raises(RuntimeError, match="already running"):
        runner.submit("slow", lambda: None)
    release.set()
    assert runner.wait_idle(5.0)
    ((worker, caller),) = seen
    assert caller == threading.get_ident()
    assert worker != caller
    assert not runner.busy()


def test_errors_reach_on_error_or_raise_in_poll():
    runner = TaskRunner()
    errors = []
    runner.submit("bad", lambda: 1 / 0, on_error=errors.append)
    assert runner.wait_idle(5.0)
    assert isinstance(errors[0], ZeroDivisionError)
    runner.submit("worse", lambda: [][1])
    with pytest.raises(IndexError):
        runner.wait_idle(5.0)
