"""Reviews, the scoring method and the most-anomalous strategy, in-process."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def client(client_env):
    return client_env[0]


def infos(client) -> dict[str, dict]:
    objects = client.get("/datastore/?output=all").json()["objects"]
    return {k: v["image"]["info"] for k, v in objects.items()}


def review(client, image_id: str, value) -> object:
    return client.put("/datastore/image/info", params={"image": image_id}, data={"info": json.dumps({"review": value})})


def test_scoring_stores_scores_for_every_image_then_skips_them(client):
    version = client.get("/info/").json()["models"]["anatpaste"]["version"]
    r = client.post("/scoring/anatpaste_score?run_sync=true")
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["model_version"] == version
    assert first["scored"] == 7
    assert first["failed"] == 0
    for image_id, info in infos(client).items():
        assert info["scored_by"] == version, image_id
        assert isinstance(info["anomaly_score"], float)
        assert info["anomaly_label"] == ("abnormal" if info["anomaly_score"] > info["anomaly_threshold"] else "normal")
    again = client.post("/scoring/anatpaste_score?run_sync=true").json()
    assert again["scored"] == 0
    assert again["skipped"] == 7


def test_scores_equal_what_infer_answers(client):
    stored = infos(client)["IM-0005-0001"]["anomaly_score"]
    answered = client.post("/infer/anatpaste?image=IM-0005-0001&output=json").json()["score"]
    assert stored == pytest.approx(answered, rel=1e-5)


def test_strategy_serves_the_most_anomalous_unreviewed_image_first(client):
    scores = {k: v["anomaly_score"] for k, v in infos(client).items()}
    served = []
    for _ in range(len(scores)):
        r = client.post("/activelearning/most_anomalous", json={})
        assert r.status_code == 200, r.text
        image_id = r.json()["id"]
        unreviewed = {k: s for k, s in scores.items() if k not in served}
        assert scores[image_id] == max(unreviewed.values())
        served.append(image_id)
        assert review(client, image_id, "abnormal").status_code == 200
    assert client.post("/activelearning/most_anomalous", json={}).json() == {}
    for image_id in served:  # withdraw the reviews for the other tests
        assert review(client, image_id, None).status_code == 200
    assert client.post("/activelearning/most_anomalous", json={}).json()["id"] == served[0]


def test_review_normal_is_stored_with_a_timestamp(client):
    r = review(client, "IM-0001-0001", "normal")
    assert r.status_code == 200, r.text
    info = client.get("/datastore/image/info", params={"image": "IM-0001-0001"}).json()
    assert info["review"] == "normal"
    assert info["reviewed_at"].endswith("+00:00")
    assert info["reviewer"] is None  # auth is off: every caller is MONAI Label's default user
    assert info["anomaly_score"] is not None  # the review did not overwrite the score
    stats = client.get("/info/").json()["train_stats"]["anatpaste"]
    assert stats["new_confirmed_normals"] == 1


@pytest.mark.parametrize("value", ["maybe", 1, "NORMAL"])
def test_a_review_must_be_normal_abnormal_or_null(client, value):
    assert review(client, "IM-0003-0001", value).status_code == 400


def test_review_of_an_unknown_image_is_404_and_of_a_path_is_400(client):
    assert review(client, "no-such-image", "normal").status_code == 404
    assert review(client, "../IM-0001-0001", "normal").status_code == 400


def test_adding_an_image_under_a_path_like_id_is_refused(client, client_env, tmp_path):
    studies = client_env[2]
    png = (studies / "IM-0001-0001.jpeg").read_bytes()
    r = client.put("/datastore/image", params={"image": "../escaped"}, files={"file": ("x.jpeg", png)})
    assert r.status_code == 400
    assert not (studies.parent / "escaped.jpeg").exists()


def test_datastore_lists_dicom_files(client):
    assert "dx_thorax_mono1_small" in infos(client)
