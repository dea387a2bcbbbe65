"""Issue 10 (server hardening) on the real server: ``monailabel start_server`` on 127.0.0.1 with auth on (the
Keycloak stand-in of test_server_auth.py), driven over HTTP. One test per case of the issue; the module's
tests run in file order on one server (scoring is off at start-up, so the first test sees an unscored
worklist; the training test is last).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from server_env import REPO, copy_app, copy_studies
from server_live import LiveServer, wait_for
from test_server_auth import ADMIN, ANNOTATOR, USER, Realm, _keypair, token

from anatpaste.model.file import save_model
from monailabel_app.lib.limits import DEFAULT_MAX_PIXELS, MAX_REQUEST_BYTES_PER_PIXEL
from monailabel_app.lib.model_store import ModelStore, file_sha256

IMAGE = "IM-0001-0001"
CONF = {"gate_min_auc": "0.0", "gate_tolerance": "1.0"}  # the gate's usability check decides, not AUC noise
LONG_TRAIN = {"mode": "finetune", "steps": 100000, "eval_every": 100000, "batch_size": 4, "image_size": 64}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, base_normals):
    tmp = tmp_path_factory.mktemp("hardening")
    key, public = _keypair()
    realm = Realm(key, public, {"dr_b": ("s3cret", [USER, ANNOTATOR])})
    studies = copy_studies(tmp / "studies")
    shutil.copy(studies / f"{IMAGE}.jpeg", studies / "..jpeg")  # id ".": left by an upload before the fix
    (studies / "junk.png").write_bytes(b"not an image at all" * 10)  # scored as an error
    app = copy_app(tmp / "app")
    env = {
        "MONAI_LABEL_AUTH_ENABLE": "true",
        "MONAI_LABEL_AUTH_REALM_URI": realm.uri,
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
    }
    conf = {"model_path": str(tiny_model), "base_normals": str(base_normals), **CONF}
    srv = LiveServer(app, str(studies), conf, tmp, env)
    srv.tmp, srv.app, srv.studies = tmp, app, studies
    srv.store = ModelStore(app / "model" / "anatpaste")
    srv.user = token(key, [USER], username="dr_user")
    srv.annotator = token(key, [USER, ANNOTATOR], username="dr_annot")
    srv.admin = token(key, [USER, ANNOTATOR, ADMIN], username="dr_admin")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
        realm.close()


def jpeg(server, image_id: str = "IM-0003-0001") -> bytes:
    return (server.studies / f"{image_id}.jpeg").read_bytes()


def png(server) -> bytes:
    buf = io.BytesIO()
    Image.open(server.studies / "IM-0005-0001.jpeg").save(buf, format="PNG")
    return buf.getvalue()


def info(server, image_id: str) -> dict:
    r = server.client.get("/datastore/image/info", params={"image": image_id}, headers=server.user)
    assert r.status_code == 200, r.text
    return r.json()


def put_info(server, image_id: str, value, headers=None):
    data = {"info": value if isinstance(value, str) else json.dumps(value)}
    return server.client.put(
        "/datastore/image/info", params={"image": image_id}, data=data, headers=headers or server.annotator
    )


def upload(server, filename: str, content: bytes, image_id: str | None = None, params=None, headers=None):
    return server.client.put(
        "/datastore/image",
        params={"image": image_id} if image_id else None,
        data={"params": params if isinstance(params, str) else json.dumps(params or {})},
        files={"file": (filename, content)},
        headers=headers or server.annotator,
    )


def infer(server, image_id: str = IMAGE) -> dict:
    r = server.client.post(f"/infer/anatpaste?image={image_id}&output=json", headers=server.user)
    assert r.status_code == 200, r.text
    return r.json()


def version(server) -> str:
    return server.client.get("/info/", headers=server.user).json()["models"]["anatpaste"]["version"]


# ---- 11: "next study" before anything is scored ---------------------------------------------------------


def test_next_study_right_after_start_up_is_an_unscored_study_with_the_scoring_progress(server):
    r = server.client.post("/activelearning/most_anomalous", json={}, headers=server.user)
    assert r.status_code == 200, r.text
    answer = r.json()
    listed = server.client.get("/datastore/?output=all", headers=server.user).json()["objects"]
    assert answer.get("id") in set(listed) - {"."}, answer
    assert answer["anomaly_score"] is None
    assert answer["worklist"] == {"status": "scoring", "scored": 0, "total": 8}  # the 7 studies and junk.png
    # The Slicer module's client gets a study to open (it scores what it opens).
    sys.path.insert(0, str(REPO / "slicer_extension" / "AnatPasteReview"))
    from AnatPasteReviewLib.client import AnatPasteClient

    client = AnatPasteClient(server.url)
    client.login("dr_b", "s3cret")
    assert client.next_study() == answer["id"]
    # MONAI Label's own client too (its next_sample answer is the JSON object).
    from monailabel.client import MONAILabelClient

    ml = MONAILabelClient(server.url, tmpdir=str(server.tmp))
    ml.update_auth(ml.auth_token("dr_b", "s3cret"))
    sample = ml.next_sample("most_anomalous", {})
    assert sample["id"] == answer["id"] and sample["worklist"]["status"] == "scoring", sample


# ---- 2: label tags ------------------------------------------------------------------------------------


def test_label_tags_cannot_address_files_outside_the_datastore(server):
    c = server.client
    absolute = str(server.tmp / "chosen")
    for tag in ("../../escape", absolute, "final"):
        r = c.put(
            "/datastore/label",
            params={"image": IMAGE, "tag": tag},
            files={"label": ("x.txt", b"written by a client")},
            headers=server.annotator,
        )
        assert r.status_code == 405, (tag, r.status_code, r.text)  # this app stores no labels
    assert not [p for p in server.tmp.rglob(f"{IMAGE}.txt")]
    assert not os.path.exists(absolute)
    r = c.get("/datastore/label", params={"label": IMAGE, "tag": "../../escape"}, headers=server.user)
    assert r.status_code == 400, r.text
    r = c.get("/datastore/label/info", params={"label": IMAGE, "tag": absolute}, headers=server.user)
    assert r.status_code == 400, r.text
    r = c.delete("/datastore/label", params={"id": IMAGE, "tag": "../../escape"}, headers=server.admin)
    assert r.status_code == 405, r.text
    r = c.put("/datastore/label/info", params={"label": IMAGE, "tag": "final"}, data={"info": "{}"},
              headers=server.annotator)
    assert r.status_code == 405, r.text


# ---- 3: an upload named ..jpeg; one bad id does not stop scoring ---------------------------------------


def test_an_upload_that_would_make_an_id_the_app_refuses_is_400_and_scoring_skips_such_ids(server):
    before = set(server.client.get("/datastore/?output=all", headers=server.user).json()["objects"])
    for name in ("..jpeg", "x.jpeg.jpeg", "photo.gif", "noextension"):
        r = upload(server, name, jpeg(server))
        assert r.status_code == 400, (name, r.status_code, r.text)
    r = upload(server, "a.jpeg", jpeg(server), image_id="b.png")  # stored as b.png.jpeg, read back as "b.png"
    assert r.status_code == 200, r.text
    assert server.client.delete("/datastore/image", params={"id": "b.png"}, headers=server.admin).status_code == 200
    assert set(server.client.get("/datastore/?output=all", headers=server.user).json()["objects"]) == before

    # "." (from the file ..jpeg in the studies folder) is skipped; the others are scored.
    r = server.client.post("/scoring/anatpaste_score?run_sync=true", headers=server.annotator)
    assert r.status_code == 200, (r.text, server.log_tail())
    current = version(server)
    objects = server.client.get("/datastore/?output=all", headers=server.user).json()["objects"]
    scored = {k for k, v in objects.items() if v["image"]["info"].get("scored_by") == current}
    assert scored == before - {"."}, (objects.keys(), server.log_tail())
    assert objects["junk"]["image"]["info"]["anomaly_error"]


# ---- 10: no server paths in answers ---------------------------------------------------------------------


def test_answers_do_not_reveal_server_paths(server):
    root = str(server.tmp)
    r = server.client.get("/datastore/image/info", params={"image": IMAGE}, headers=server.user)
    assert r.status_code == 200
    assert "path" not in r.json()
    assert root not in r.text
    error = info(server, "junk")["anomaly_error"]
    assert "junk" in error and root not in error, error
    assert root not in server.client.get("/datastore/?output=all", headers=server.user).text
    r = server.client.post("/activelearning/most_anomalous", json={}, headers=server.user)
    assert r.status_code == 200 and r.json()["id"], r.text
    assert "path" not in r.json() and root not in r.text, r.text
    # An error stored by an earlier version of the app named the file by its server path.
    config = server.studies / "datastore_v2.json"
    data = json.loads(config.read_text())
    data["objects"]["junk"]["image"]["info"]["anomaly_error"] = f"UnreadableImageError: {server.studies}/junk.png: x"
    tmp = config.with_name(".datastore_v2.json.test")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, config)
    assert info(server, "junk")["anomaly_error"] == "UnreadableImageError: junk.png: x"
    assert root not in server.client.get("/datastore/?output=all", headers=server.user).text


# ---- 4: temporary files of refused uploads --------------------------------------------------------------


def test_refused_uploads_leave_no_temporary_file(server):
    before = set(os.listdir(server.tmpdir))
    junk = os.urandom(3 * 2**20)
    for _ in range(3):
        r = server.client.post("/infer/anatpaste?output=json", files={"file": ("junk.dcm", junk)}, headers=server.user)
        assert r.status_code == 422, r.text
    time.sleep(0.5)
    assert set(os.listdir(server.tmpdir)) == before
    assert upload(server, "junk.jpeg", junk, params='{"bad').status_code == 400
    assert upload(server, "junk.dcm", junk, image_id=IMAGE).status_code == 409
    time.sleep(0.5)
    assert set(os.listdir(server.tmpdir)) == before


# ---- 5: an existing id is not replaced silently --------------------------------------------------------


def test_uploading_an_existing_id_is_409_unless_replace_is_asked_and_then_nothing_stale_stays(server):
    assert upload(server, "first.jpeg", jpeg(server), image_id="case5").status_code == 200
    assert put_info(server, "case5", {"review": "normal"}).status_code == 200
    r = upload(server, "second.jpeg", jpeg(server, "IM-0005-0001"), image_id="case5")
    assert r.status_code == 409, r.text
    assert info(server, "case5")["review"] == "normal"
    assert (server.studies / "case5.jpeg").read_bytes() == jpeg(server)

    r = upload(server, "second.png", png(server), image_id="case5", params={"replace": True})
    assert r.status_code == 200, r.text
    fresh = info(server, "case5")
    assert "review" not in fresh and "anomaly_score" not in fresh, fresh
    assert sorted(p.name for p in server.studies.glob("case5.*")) == ["case5.png"]
    assert upload(server, "x.png", png(server), image_id="case5", params={"replace": "yes"}).status_code == 400
    assert server.client.delete("/datastore/image", params={"id": "case5"}, headers=server.admin).status_code == 200
    assert not list(server.studies.glob("case5.*"))


# ---- 6: review and score fields are the server's ------------------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        {"reviewer": "someone_else"},
        {"review": "normal", "reviewed_at": "1999-01-01T00:00:00+00:00"},
        {"anomaly_score": 99.0},
        {"anomaly_label": "normal"},
        {"scored_by": "x"},
        {"user": "someone_else", "review": "normal"},
    ],
)
def test_clients_cannot_set_review_or_score_fields(server, forged):
    before = info(server, "IM-0005-0001")
    r = put_info(server, "IM-0005-0001", forged)
    assert r.status_code == 400, r.text
    assert info(server, "IM-0005-0001") == before
    assert upload(server, "f.jpeg", jpeg(server), image_id="forged", params=forged).status_code == 400


def test_a_review_records_the_token_user_and_the_server_time(server):
    assert put_info(server, "IM-0005-0001", {"review": "normal"}).status_code == 200
    stored = info(server, "IM-0005-0001")
    assert stored["reviewer"] == "dr_annot"
    assert stored["reviewed_at"].endswith("+00:00")
    assert put_info(server, "IM-0005-0001", {"review": None}).status_code == 200


# ---- 9: client mistakes are 4xx -----------------------------------------------------------------------


def test_client_mistakes_answer_4xx_not_500(server):
    c, user, admin = server.client, server.user, server.admin
    assert c.post("/infer/anatpaste?output=json", headers=user).status_code == 400  # neither image nor file
    assert put_info(server, IMAGE, "{bad").status_code == 400
    assert put_info(server, IMAGE, "[1]").status_code == 400
    assert upload(server, "p.jpeg", jpeg(server), image_id="badparams", params="{bad").status_code == 400
    assert upload(server, "p.jpeg", jpeg(server), image_id="badparams", params="[1]").status_code == 400
    assert c.delete("/datastore/image", params={"id": "nosuch"}, headers=admin).status_code == 404
    assert c.delete("/datastore/image", params={"id": "."}, headers=admin).status_code == 400
    many = "x" + ".a" * 200 + ".jpeg"
    r = c.post("/infer/anatpaste?output=json", files={"file": (many, jpeg(server))}, headers=user)
    assert r.status_code == 200, r.text  # only the last suffix matters
    assert upload(server, many, jpeg(server)).status_code == 400  # its id is too long for a file name
    assert c.get("/datastore/image/info", params={"image": "nosuch"}, headers=user).status_code == 404
    assert c.get("/datastore/image/info", params={"image": "../x"}, headers=user).status_code == 400


# ---- 7: model_store rollback takes version names only --------------------------------------------------


def cli(server, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monailabel_app.lib.model_store", "--app", str(server.app), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_rollback_refuses_paths_and_overlong_names(server, tiny_model):
    published = server.store.current()
    shutil.copy(tiny_model, server.tmp / "outside.pt")  # what versions/../../../../outside.pt names
    for name in ("../../../../outside", "x" * 5000, f"/{server.tmp}/outside"):
        done = cli(server, "rollback", name)
        assert done.returncode == 2, (name[:80], done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.startswith("error:"), done.stderr
    assert server.store.current() == published
    assert infer(server)["model_version"] == published.name


# ---- 1: the model routes ------------------------------------------------------------------------------


def model_variant(path, tiny_model, **threshold) -> bytes:
    payload = torch.load(tiny_model, map_location="cpu", weights_only=True)
    payload["created"] = f"variant {path.name}"  # other bytes, same network
    payload["threshold"] = {**payload["threshold"], **threshold}
    for key in ("format", "format_version"):
        payload.pop(key)
    save_model(payload, path)
    return path.read_bytes()


def test_the_model_is_replaced_only_by_an_admin_through_the_gate_as_a_new_version(server, tiny_model):
    c = server.client
    published = server.store.current()
    published_sha = file_sha256(published.path)
    files = sorted(os.listdir(server.store.versions_dir))
    garbage = {"file": ("garbage.pt", b"definitely not a model")}

    assert c.put("/model/anatpaste", files=garbage, headers=server.annotator).status_code == 403
    assert c.delete("/model/anatpaste", headers=server.annotator).status_code == 403
    r = c.put("/model/anatpaste", files=garbage, headers=server.admin)
    assert r.status_code == 422, r.text
    r = c.delete("/model/anatpaste", headers=server.admin)
    assert r.status_code == 405, r.text
    nan = model_variant(server.tmp / "nan.pt", tiny_model, value=math.nan)
    r = c.put("/model/anatpaste", files={"file": ("nan.pt", nan)}, headers=server.admin)
    assert r.status_code == 422, r.text
    assert "sanity gate" in r.text
    assert c.put("/model/other", files=garbage, headers=server.admin).status_code == 404
    assert server.store.current() == published
    assert file_sha256(published.path) == published_sha
    assert sorted(os.listdir(server.store.versions_dir)) == files
    assert version(server) == published.name

    variant = model_variant(server.tmp / "variant.pt", tiny_model)
    r = c.put("/model/anatpaste", files={"file": ("variant.pt", variant)}, headers=server.admin)
    assert r.status_code == 200, (r.text, server.log_tail())
    answer = r.json()
    assert answer["previous"] == published.name
    assert answer["version"] != published.name and answer["gate"]["passed"] is True
    assert answer["gate"]["acceptance"]["passed"] is True  # not active yet: no reviewed abnormals here
    assert server.store.current().name == answer["version"]
    assert file_sha256(server.store.current().path) == file_sha256(server.tmp / "variant.pt")
    assert file_sha256(published.path) == published_sha  # the earlier version is kept, unchanged
    assert server.store.entry(answer["version"])["uploaded_by"] == "dr_admin"
    assert infer(server)["model_version"] == answer["version"]
    assert not [p for p in server.store.root.iterdir() if p.name.startswith("anatpaste-upload-")]


# ---- the memory bound of one request (issue 10, "Done when") -----------------------------------------


def big_png(server, width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.open(server.studies / f"{IMAGE}.jpeg").convert("L").resize((width, height)).save(buf, format="PNG")
    return buf.getvalue()


def test_images_over_the_pixel_limit_are_422_and_one_at_the_limit_stays_within_the_memory_bound(server):
    side = int(math.isqrt(DEFAULT_MAX_PIXELS))
    r = server.client.post(
        "/infer/anatpaste?output=json", files={"file": ("big.png", big_png(server, side + 1, side))},
        headers=server.user,
    )
    assert r.status_code == 422 and "ImageTooLargeError" in r.text, r.text
    status = f"/proc/{server.proc.pid}/status"
    with open(f"/proc/{server.proc.pid}/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident size (VmHWM) to the present one
    resting = _kib(status, "VmRSS")
    r = server.client.post(
        "/infer/anatpaste?output=all", files={"file": ("big.png", big_png(server, side, side))}, headers=server.user
    )
    assert r.status_code == 200, r.text
    peak = (_kib(status, "VmHWM") - resting) * 1024
    print(f"output=all of a {side} x {side} PNG: {peak / 2**20:.0f} MiB above resting, {len(r.content)} bytes")
    assert peak <= MAX_REQUEST_BYTES_PER_PIXEL * side * side, f"{peak / 2**20:.0f} MiB above resting"
    assert len(r.content) <= 8 * side * side + 2**16  # float32 heatmap + lung mask, headers, the JSON part


def _kib(status_file: str, field: str) -> int:
    for line in Path(status_file).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    pytest.fail(f"{field} not in {status_file}")


# ---- 8: one training at a time, enqueue or not ----------------------------------------------------------


def test_enqueue_during_a_training_is_429_and_the_running_one_stays_visible(server):
    c = server.client
    r = c.post("/train/anatpaste", json=LONG_TRAIN, headers=server.admin)
    assert r.status_code == 200, (r.text, server.log_tail())
    try:
        task = wait_for(
            lambda: (t := c.get("/train/", headers=server.user).json()).get("status") == "RUNNING" and t,
            240, "the training to run", server,
        )
        r = c.post("/train/anatpaste?enqueue=true", json=LONG_TRAIN, headers=server.admin)
        assert r.status_code == 429, r.text
        now = c.get("/train/", headers=server.user).json()
        assert now["id"] == task["id"] and now["status"] == "RUNNING", now
    finally:
        stopped = c.delete("/train/", headers=server.admin)
    assert stopped.json()["status"] == "STOPPED", stopped.text
