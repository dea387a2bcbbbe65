"""The real server: ``monailabel start_server`` on 127.0.0.1, driven over HTTP, stopped by its PID.

infer -> confirm normals -> train (MONAI Label's subprocess, CPU, tiny) -> new version -> infer again; a
stopped training leaves the published model; the worklist is scored at start-up and again after training.
"""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import psutil
import pytest
from server_env import copy_app, copy_studies
from server_live import LiveServer, wait_for

from monailabel_app.lib.model_store import ModelStore

TRAIN = {"mode": "finetune", "steps": 6, "batch_size": 4, "image_size": 64, "eval_every": 3, "gate_min_auc": 0.0,
         "gate_tolerance": 1.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, base_normals):
    tmp = tmp_path_factory.mktemp("live")
    app = copy_app(tmp / "app")
    studies = copy_studies(tmp / "studies")
    srv = LiveServer(app, str(studies), {"model_path": tiny_model, "base_normals": base_normals}, tmp)
    srv.app, srv.studies = app, studies
    srv.store = ModelStore(app / "model" / "anatpaste")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
    assert srv.proc.returncode is not None


def infer(server, image_id="IM-0001-0001") -> dict:
    r = server.client.post(f"/infer/anatpaste?image={image_id}&output=json")
    assert r.status_code == 200, r.text
    return r.json()


def infos(server) -> dict[str, dict]:
    objects = server.client.get("/datastore/?output=all").json()["objects"]
    return {k: v["image"]["info"] for k, v in objects.items()}


def train_stats(server) -> dict:
    return server.client.get("/info/").json()["train_stats"]["anatpaste"]


def test_server_listens_on_loopback_only(server):
    addrs = {c.laddr.ip for c in psutil.Process(server.proc.pid).net_connections(kind="tcp") if c.status == "LISTEN"}
    assert addrs == {"127.0.0.1"}


def test_startup_scoring_fills_the_worklist(server):
    info = server.client.get("/info/").json()
    version = info["models"]["anatpaste"]["version"]
    assert "archive" not in info  # a folder of studies: no archive to read results back from

    def all_scored():
        i = infos(server)
        return i if all(v.get("scored_by") == version for v in i.values()) else None

    scored = wait_for(all_scored, 180, "the start-up scoring subprocess", server, interval=2)
    assert len(scored) == 7
    top = server.client.post("/activelearning/most_anomalous", json={}).json()
    assert top["id"] == max(scored, key=lambda k: scored[k]["anomaly_score"])


def test_infer_confirm_train_publish_infer_again(server):
    c = server.client
    before = infer(server)["model_version"]
    for image_id in ("IM-0001-0001", "IM-0003-0001", "IM-0005-0001"):
        r = c.put("/datastore/image/info", params={"image": image_id}, data={"info": json.dumps({"review": "normal"})})
        assert r.status_code == 200, r.text
    assert train_stats(server)["new_confirmed_normals"] == 3

    r = c.post("/train/anatpaste", json=TRAIN)
    assert r.status_code == 200, (r.text, server.log_tail())
    assert r.json()["status"] in ("SUBMITTED", "RUNNING")
    second = c.post("/train/anatpaste", json=TRAIN)
    assert second.status_code == 429, (second.text, server.log_tail())  # one training at a time

    # While it trains, the server keeps answering infers (several at once) and reports progress.
    answers, errors, seen = [], [], []

    def infer_during_training():
        try:
            with httpx.Client(base_url=server.url, timeout=120.0) as own:  # one client per thread
                r = own.post("/infer/anatpaste?image=IM-0003-0001&output=json")
                r.raise_for_status()
                answers.append(r.json())
        except Exception as err:  # reported below with the server's log
            errors.append(repr(err))

    workers = [threading.Thread(target=infer_during_training) for _ in range(3)]
    for w in workers:
        w.start()

    def finished():
        task = c.get("/train/").json()
        seen.append(task)
        return task if task["status"] not in ("SUBMITTED", "RUNNING") else None

    task = wait_for(finished, 300, "training to finish", server, interval=0.5)
    for w in workers:
        w.join(timeout=120)
    assert len(answers) == 3, (errors, server.log_tail())
    assert all(a["model_version"] == before for a in answers)
    assert task["status"] == "DONE", (task, server.log_tail())
    assert task["outcome"] == "published", task
    assert any(t.get("status") == "RUNNING" and isinstance(t.get("total"), int) for t in seen), seen
    assert task["step"] == task["total"] == TRAIN["steps"]
    assert isinstance(task["synthetic_auc"], float)
    assert task["details"]  # MONAI Label's last output lines of the subprocess
    assert "anatpaste-train train step" in server.log_path.read_text()  # progress lines reach the server log
    new = task["published_version"]
    assert new != before

    assert infer(server)["model_version"] == new
    stats = train_stats(server)
    assert stats["current_version"] == new
    assert stats["new_confirmed_normals"] == 0
    assert server.store.current().name == new

    def rescored():  # MONAI Label runs the scoring methods again after a training
        i = infos(server)
        return all(v.get("scored_by") == new for v in i.values())

    wait_for(rescored, 180, "scoring with the new version", server, interval=2)


def test_stopping_a_training_keeps_the_published_model(server):
    c = server.client
    published = server.store.current()
    files = sorted(os.listdir(server.store.versions_dir))
    r = c.post("/train/anatpaste", json={**TRAIN, "steps": 100000, "eval_every": 100000})
    assert r.status_code == 200, (r.text, server.log_tail())
    wait_for(lambda: (train_stats(server).get("step") or 0) >= 2, 240, "training to take steps", server)
    stopped = c.delete("/train/").json()
    assert stopped["status"] == "STOPPED", (stopped, server.log_tail())
    time.sleep(1.0)
    stats = train_stats(server)
    assert stats["status"] == "STOPPED"
    assert stats["outcome"] == "stopped"
    assert c.get("/train/").json()["status"] == "STOPPED"
    assert server.store.current() == published
    assert sorted(os.listdir(server.store.versions_dir)) == files
    assert infer(server)["model_version"] == published.name


def test_nothing_is_written_outside_the_datastore_model_and_log_folders(server):
    app_files = {p.relative_to(server.app).parts[0] for p in server.app.rglob("*") if p.is_file()}
    assert app_files <= {"__init__.py", "main.py", "launch.py", "model", "logs", "README.md", "bin"}
    leftovers = [p.name for p in server.tmpdir.iterdir() if not p.name.endswith(".json")]  # MONAI Label's log config
    assert leftovers == [], f"temporary files left behind: {leftovers}"
