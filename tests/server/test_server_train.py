"""Training in-process (run_sync): confirmed normals -> new version through the gate; the gate's refusal."""

from __future__ import annotations

import json
import os

import pytest
from server_env import make_client

from monailabel_app.lib import gate
from monailabel_app.lib.model_store import ModelStore

SMALL = {
    "mode": "finetune",
    "steps": 4,
    "batch_size": 4,
    "image_size": 64,
    "eval_every": 2,
    "gate_min_auc": 0.0,
    "gate_tolerance": 1.0,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model, base_normals):
    tmp = tmp_path_factory.mktemp("train")
    client, app_dir, studies = make_client(tmp, {"model_path": str(tiny_model), "base_normals": str(base_normals)})
    with client:
        yield client, ModelStore(app_dir / "model" / "anatpaste")


def confirm(client, *ids):
    for image_id in ids:
        r = client.put(
            "/datastore/image/info",
            params={"image": image_id},
            data={"info": json.dumps({"review": "normal"})},
        )
        assert r.status_code == 200, r.text


def version_of(client) -> str:
    return client.post("/infer/anatpaste?image=IM-0001-0001&output=json").json()["model_version"]


def test_training_on_confirmed_normals_publishes_a_new_version(env):
    client, store = env
    before = version_of(client)
    confirm(client, "IM-0001-0001", "IM-0003-0001", "IM-0005-0001")
    assert client.get("/info/").json()["train_stats"]["anatpaste"]["new_confirmed_normals"] == 3

    r = client.post("/train/anatpaste?run_sync=true", json=SMALL)
    assert r.status_code == 200, r.text
    result = r.json()
    new = result["published_version"]
    assert new is not None
    assert new != before
    assert result["gate"]["passed"] is True

    assert version_of(client) == new
    info = client.get("/info/").json()
    assert info["models"]["anatpaste"]["version"] == new
    stats = info["train_stats"]["anatpaste"]
    assert stats["status"] == "DONE"
    assert stats["outcome"] == "published"
    assert stats["published_version"] == new
    assert stats["step"] == stats["total"] == SMALL["steps"]
    assert stats["new_confirmed_normals"] == 0  # all three went into the published version
    entry = store.entry(new)
    assert entry["parent"] == before
    assert sorted(entry["confirmed_normals"]) == ["IM-0001-0001", "IM-0003-0001", "IM-0005-0001"]
    assert entry["n_images"] == 3 + 10  # confirmed + base normals
    assert [v["version"] for v in store.versions()] == [before, new]
    assert not store.candidates_dir.exists() or not any(store.candidates_dir.iterdir())


def test_data_parallel_training_in_two_processes_publishes_a_new_version(env):
    # What a multi-GPU server does (one process per GPU, NCCL), here with two CPU processes and Gloo.
    client, store = env
    before = version_of(client)
    confirm(client, "IM-0001-0001", "IM-0003-0001", "IM-0005-0001")
    r = client.post("/train/anatpaste?run_sync=true", json={**SMALL, "processes": 2, "device": "cpu"})
    assert r.status_code == 200, r.text
    new = r.json()["published_version"]
    assert new not in (None, before)
    stats = client.get("/info/").json()["train_stats"]["anatpaste"]
    assert stats["processes"] == 2
    assert stats["step"] == stats["total"] == SMALL["steps"]
    assert store.entry(new)["parent"] == before


def test_a_candidate_refused_by_the_gate_changes_nothing(env, monkeypatch):
    client, store = env
    published = store.current()
    files = sorted(os.listdir(store.versions_dir))
    auc = {"calls": 0}

    def worse_candidate(model_file, data, config):  # the candidate is evaluated first, then the current model
        auc["calls"] += 1
        return 0.40 if auc["calls"] == 1 else 0.90

    monkeypatch.setattr(gate, "model_synthetic_auc", worse_candidate)
    r = client.post("/train/anatpaste?run_sync=true", json={**SMALL, "gate_tolerance": 0.02})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["published_version"] is None
    assert result["gate"]["passed"] is False
    assert "worse than the published model" in result["gate"]["reason"]
    assert store.current() == published
    assert sorted(os.listdir(store.versions_dir)) == files
    stats = client.get("/info/").json()["train_stats"]["anatpaste"]
    assert stats["outcome"] == "rejected"
    assert version_of(client) == published.name


@pytest.mark.parametrize("body", [{"steps": 0}, {"steps": "many"}, {"init": "yesterday"}, {"device": "tpu"}])
def test_a_bad_training_request_is_400_before_anything_starts(env, body):
    client, store = env
    published = store.current()
    r = client.post("/train/anatpaste", json={**SMALL, **body})
    assert r.status_code == 400, r.text
    assert store.current() == published


def test_too_few_normals_is_a_clear_error(tmp_path, tiny_model):
    client, app_dir, _ = make_client(tmp_path, {"model_path": str(tiny_model)})  # no base normals
    with client:
        confirm(client, "IM-0001-0001")
        with pytest.raises(Exception, match="needs at least 4"):
            client.post("/train/anatpaste?run_sync=true", json=SMALL)
        stats = client.get("/info/").json()["train_stats"]["anatpaste"]
        assert stats["status"] == "ERROR"
        assert "base_normals" in stats["error"]
