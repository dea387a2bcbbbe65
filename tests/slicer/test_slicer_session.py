"""The reviewer's session (connect, open, score, review, train, follow progress) against the local fake
server: flows, consent, and that a dead or slow server never blocks the calling (GUI) thread."""

from __future__ import annotations

import time

import numpy as np
from AnatPasteReviewLib.client import AnatPasteClient, Timeouts
from AnatPasteReviewLib.session import ReviewSession
from AnatPasteReviewLib.workflow import Study, controls
from slicer_fake_server import hang, test_maps


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


FAST = Timeouts(connect=0.5, read=1.0, total=5.0)


def make_session(consent=None, timeouts=FAST):
    clock = Clock()
    session = ReviewSession(
        client_factory=lambda url: AnatPasteClient(url, timeouts=timeouts), consent=consent, clock=clock
    )
    events = {"changed": 0, "results": [], "downloads": []}
    session.changed.connect(lambda: events.__setitem__("changed", events["changed"] + 1))
    session.result_ready.connect(lambda *a: events["results"].append(a))
    session.study_downloaded.connect(lambda *a: events["downloads"].append(a))
    return session, clock, events


def settle(session: ReviewSession) -> None:
    assert session.runner.wait_idle(10.0), "a server call did not finish"


def connected(fake, **kwargs):
    session, clock, events = make_session(**kwargs)
    session.connect(fake.url)
    settle(session)
    assert session.state.connected, session.state.error
    return session, clock, events


def test_connect_shows_model_and_enables_actions(fake):
    session, _, events = connected(fake)
    c = controls(session.state)
    assert c.server_text == f"{fake.url} - model anatpaste v1 - idle"
    assert c.next_study
    assert not c.score
    assert events["changed"] >= 2


def test_dead_server_never_blocks_and_reports(silent_url):
    session, _, _ = make_session()
    t0 = time.monotonic()
    session.connect(silent_url)
    session.tick()
    assert time.monotonic() - t0 < 0.2  # returned at once; the connect runs in the background
    assert controls(session.state).server_text.startswith("Connecting")
    assert not controls(session.state).connect
    settle(session)
    assert not session.state.connected
    assert "no answer from" in session.state.error
    assert controls(session.state).connect


def test_worklist_study_is_scored_by_id_with_aligned_maps(fake, tmp_path):
    session, _, events = connected(fake)
    session.next_study(str(tmp_path))
    settle(session)
    ((path, image_id),) = events["downloads"]
    assert image_id == "study-a"
    assert path.endswith("study-a.png")
    session.set_study(Study(image_id, "server", image_id=image_id, path=path))
    assert session.score()
    settle(session)
    ((study, result, maps),) = events["results"]
    assert study.image_id == "study-a"
    assert result.model_version == "v1"
    heat, mask = test_maps((48, 64))
    np.testing.assert_array_equal(maps.heatmap, heat)
    np.testing.assert_array_equal(maps.lung_mask, mask)
    assert fake.calls("POST", "/infer/anatpaste")[0].query["image"] == "study-a"
    assert controls(session.state).verdict == "abnormal"


def test_no_upload_without_consent(fake, tmp_path):
    asked = []
    session, _, events = connected(fake, consent=lambda study, action: asked.append((study.name, action)) or False)
    path = tmp_path / "local.png"
    path.write_bytes(fake.state.images["study-b"]["data"])
    session.set_study(Study("local.png", "file", path=str(path)))
    assert session.score() is False
    assert session.confirm("normal") is False
    settle(session)
    assert asked == [("local.png", "score"), ("local.png", "store")]
    assert fake.calls("POST", "/infer/anatpaste") == []
    assert fake.calls("PUT", "/datastore/image") == []
    assert events["results"] == []
    assert "Not stored" in session.state.message


def test_local_file_upload_score_and_review(fake, tmp_path):
    session, _, events = connected(fake, consent=lambda study, action: True)
    path = tmp_path / "local.png"
    path.write_bytes(fake.state.images["study-b"]["data"])
    session.set_study(Study("local.png", "file", path=str(path)))
    session.score()
    settle(session)
    assert events["results"][0][1].shape == (40, 40)
    assert "local" not in fake.state.images  # scoring does not store the image
    session.confirm("normal")
    settle(session)
    assert session.state.study.image_id == "local"
    assert session.state.review == "normal"
    assert fake.state.images["local"]["info"] == {"review": "normal"}
    assert session.state.training.new_confirmed_normals == 1
    c = controls(session.state)
    assert not c.confirm_normal
    assert c.confirm_abnormal
    assert c.start_training


def test_review_of_worklist_study_and_reopening_shows_it(fake):
    session, _, _ = connected(fake)
    study = Study("study-a", "server", image_id="study-a")
    session.set_study(study)
    session.confirm("abnormal")
    settle(session)
    assert fake.state.images["study-a"]["info"] == {"review": "abnormal"}
    session.set_study(None)
    session.set_study(study)
    settle(session)
    assert session.state.review == "abnormal"


def test_result_for_a_study_left_meanwhile_is_dropped(fake):
    session, _, events = connected(fake)
    session.set_study(Study("study-a", "server", image_id="study-a"))
    session.score()
    session.set_study(Study("study-b", "server", image_id="study-b"))
    settle(session)
    assert events["results"] == []
    assert session.state.result is None


def test_training_progress_new_version_and_rescore(fake):
    session, clock, _ = connected(fake)
    session.set_study(Study("study-a", "server", image_id="study-a"))
    session.score()
    session.confirm("normal")
    settle(session)
    session.start_training({"steps": 3})
    settle(session)
    assert session.state.training_running
    assert not controls(session.state).start_training
    seen = []
    for _ in range(6):
        clock.now += 2.0  # the poll interval while training
        session.tick()
        settle(session)
        seen.append(session.state.training.step)
        if not session.state.training_running:
            break
    assert seen[:2] == [2, 3]
    assert session.state.training.status == "DONE"
    assert session.state.message == "Training finished; model v2 is published."
    c = controls(session.state)
    assert c.rescore
    assert "v2" in c.new_model_text
    session.score()
    settle(session)
    assert session.state.result.model_version == "v2"
    assert not controls(session.state).rescore


def test_idle_polling_is_slow_and_quiet(fake):
    session, clock, _ = connected(fake)
    n = len(fake.calls("GET", "/info/"))
    clock.now += 5.0
    session.tick()
    settle(session)
    assert len(fake.calls("GET", "/info/")) == n  # idle: every 20 s only
    clock.now += 20.0
    session.tick()
    settle(session)
    assert len(fake.calls("GET", "/info/")) == n + 1


def test_stop_training(fake):
    session, _, _ = connected(fake)
    session.start_training({"steps": 50})
    settle(session)
    assert controls(session.state).stop_training
    session.stop_training()
    settle(session)
    assert session.state.training.status == "STOPPED"
    assert session.state.message == "Training stopped; the published model is unchanged."


def test_training_conflict_is_reported(fake):
    session, _, _ = connected(fake)
    fake.state.training.running = True
    fake.state.training.status = "RUNNING"
    session.start_training()
    settle(session)
    assert "training is already running" in session.state.error


def test_slow_score_keeps_the_gui_thread_free_and_times_out(fake):
    session, _, _ = connected(fake)
    fake.on("POST", "/infer/anatpaste", hang(3.0))
    session.set_study(Study("study-a", "server", image_id="study-a"))
    t0 = time.monotonic()
    session.score()
    for _ in range(5):
        session.tick()
    assert time.monotonic() - t0 < 0.2
    assert not controls(session.state).score  # one score at a time
    settle(session)
    assert "did not answer POST /infer/anatpaste within 1 s" in session.state.error
    assert session.state.connected  # a slow answer is not a lost server


def test_losing_the_server_during_polling(fake):
    session, clock, _ = connected(fake)
    fake.stop()
    clock.now += 30.0
    session.tick()
    settle(session)
    assert not session.state.connected
    assert session.state.error.startswith("Lost the server")
    assert controls(session.state).connect
    assert not controls(session.state).score


def test_login_flow(fake):
    fake.state.auth = True
    session, _, _ = make_session()
    session.connect(fake.url)
    settle(session)
    c = controls(session.state)
    assert session.state.connected
    assert c.login
    assert not c.score
    assert not c.next_study
    assert "log in" in c.server_text
    assert fake.calls("GET", "/info/") == []
    session.login("doc", "wrong")
    settle(session)
    assert not session.state.logged_in
    assert "401" in session.state.error
    session.login("doc", "pw")
    settle(session)
    assert session.state.logged_in
    assert session.state.info.model_version == "v1"
    c = controls(session.state)
    assert not c.login
    assert c.next_study


def test_a_failing_slot_becomes_a_message_not_a_crash(fake):
    session, _, _ = connected(fake)

    def broken_scene(study, result, maps):
        raise ValueError("the server's maps are 48x64 pixels but chest is 40x40")

    session.result_ready.connect(broken_scene)
    session.set_study(Study("study-a", "server", image_id="study-a"))
    session.score()
    settle(session)  # no exception out of the timer
    assert session.state.error == "the server's maps are 48x64 pixels but chest is 40x40"
    assert controls(session.state).score  # and the reviewer can go on


def test_late_answers_from_a_server_left_behind_are_dropped(fake):
    from slicer_fake_server import FakeServer

    other = FakeServer().start()
    try:
        other.state.version = "v7"
        session, clock, _ = connected(fake)
        fake.on("GET", "/train/", hang(0.5))
        clock.now += 30.0
        session.tick()  # a poll of the first server, answering late
        session.connect(other.url)
        settle(session)
        assert session.state.server_url == other.url
        assert session.state.info.model_version == "v7"
        assert session.state.error is None
    finally:
        other.stop()


def test_switching_servers_turns_a_worklist_study_into_a_local_file(fake, tmp_path):
    from slicer_fake_server import FakeServer

    other = FakeServer().start()
    try:
        session, _, _ = connected(fake)
        path = str(tmp_path / "study-a.png")
        session.set_study(Study("study-a", "server", image_id="study-a", path=path))
        session.connect(other.url)
        settle(session)
        assert session.state.study == Study("study-a", "file", image_id=None, path=path)
        assert session.state.study.needs_upload  # scoring it now asks before sending the file
    finally:
        other.stop()
