"""The app's parts without a server: ids, settings, the version store, the gate's rule, progress, the NRRD."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from server_env import ZHANGLAB

from anatpaste.errors import ModelFileError
from anatpaste.model.file import load_model, save_model
from anatpaste.train import TrainProgress
from monailabel_app.launch import free_port
from monailabel_app.lib import model_store as ms
from monailabel_app.lib.config import AppConfig, ConfigError, TrainOptions
from monailabel_app.lib.datastore_local import AnatPasteLocalDatastore
from monailabel_app.lib.gate import decide
from monailabel_app.lib.ids import BadImageIdError, check_image_id, is_image_id
from monailabel_app.lib.result_image import read_maps_nrrd, write_maps_nrrd
from monailabel_app.lib.review import stamp_review
from monailabel_app.lib.train_stats import StatsWriter, read_stats, reconcile

# ---- ids -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["IM-0001-0001", "person1_virus_6", "1.2.840.113619.2.55.3", "a..b", "x y"])
def test_plain_ids_pass(good):
    assert check_image_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b", "a\x00b", "a\nb", "x" * 256, None, 3]
)
def test_path_like_ids_fail(bad):
    with pytest.raises(BadImageIdError):
        check_image_id(bad)
    assert not is_image_id(bad)


# ---- settings --------------------------------------------------------------------------------------------


def test_conf_strings_become_typed_settings(tmp_path):
    cfg = AppConfig.from_conf(
        {"train_steps": "30", "train_lr": "0.002", "gate_min_auc": "0.6", "base_normals": str(tmp_path)}, tmp_path
    )
    assert cfg.train.steps == 30
    assert cfg.train.lr == pytest.approx(0.002)
    assert cfg.train.gate_min_auc == pytest.approx(0.6)
    assert cfg.base_normals == tmp_path.resolve()
    assert cfg.model_dir == (tmp_path / "model" / "anatpaste").resolve()
    assert cfg.model_path is None


@pytest.mark.parametrize(
    "conf",
    [
        {"train_steps": "lots"},
        {"train_steps": "0"},
        {"base_normals": "/no/such/folder"},
        {"device": "tpu"},
        {"infer_threads": "0"},
        {"gate_tolerance": "2"},
    ],
)
def test_bad_conf_values_are_named(tmp_path, conf):
    with pytest.raises(ConfigError, match=next(iter(conf)).removeprefix("train_")):
        AppConfig.from_conf(conf, tmp_path)


def test_train_request_overrides_defaults_and_ignores_monai_label_keys():
    base = TrainOptions(steps=50)
    opts = TrainOptions.from_values({"steps": 7, "model": "anatpaste", "local_rank": 0, "gpus": "all"}, base)
    assert opts.steps == 7
    assert opts.batch_size == base.batch_size
    with pytest.raises(ConfigError, match="batch_size"):
        TrainOptions.from_values({"batch_size": 2.5})


# ---- reviews ---------------------------------------------------------------------------------------------


def test_review_is_stamped_and_reviewer_only_with_auth():
    out = stamp_review({"review": "normal", "user": "dr_a"}, auth_enabled=True)
    assert out["reviewer"] == "dr_a"
    assert out["reviewed_at"]
    assert stamp_review({"review": "normal", "user": "admin"}, auth_enabled=False)["reviewer"] is None
    assert stamp_review({"review": None}, auth_enabled=True)["reviewed_at"] is None
    assert stamp_review({"other": 1}, auth_enabled=True) == {"other": 1}


# ---- the version store -----------------------------------------------------------------------------------


@pytest.fixture
def two_models(tiny_model, tmp_path):
    """The tiny model and a valid variant of it (another threshold, so another file and version)."""
    payload = load_model(tiny_model)
    payload["threshold"] = {**payload["threshold"], "value": payload["threshold"]["value"] + 1.0}
    for k in ("format", "format_version"):
        payload.pop(k)
    other = save_model(payload, tmp_path / "other.pt")
    return tiny_model, other


def test_seed_publishes_once(tmp_path, two_models):
    a, b = two_models
    store = ms.ModelStore(tmp_path / "store")
    assert store.current() is None
    v = store.seed(a)
    assert v.name.startswith("tiny-")
    assert store.seed(b) == v  # an existing store is never re-seeded
    assert store.current() == v
    assert (tmp_path / "store" / "current.pt").resolve() == v.path.resolve()


def test_publish_switches_and_rollback_returns(tmp_path, two_models):
    a, b = two_models
    store = ms.ModelStore(tmp_path / "store")
    va = store.seed(a)
    vb = store.publish(b, origin="train", meta={"parent": va.name})
    assert store.current() == vb
    assert store.entry(vb.name)["parent"] == va.name
    assert store.rollback() == va
    assert store.current() == va
    assert store.rollback(vb.name) == vb
    assert [v["version"] for v in store.versions()] == [va.name, vb.name]
    assert [e["action"] for e in store.manifest()["history"]] == ["seed", "publish", "rollback", "rollback"]
    assert a.is_file()  # copied, not moved, unless asked


def test_the_same_file_is_one_version(tmp_path, two_models):
    a, _ = two_models
    store = ms.ModelStore(tmp_path / "store")
    assert store.add_version(a, "x").name == store.add_version(a, "y").name
    assert len(store.versions()) == 1


def test_a_corrupt_file_is_never_published(tmp_path, two_models):
    a, _ = two_models
    store = ms.ModelStore(tmp_path / "store")
    good = store.seed(a)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(a.read_bytes()[:100_000])  # a truncated copy
    with pytest.raises(ModelFileError):
        store.publish(bad, origin="train")
    assert store.current() == good
    assert len(store.versions()) == 1
    with pytest.raises(ms.ModelStoreError, match="unknown model version"):
        store.rollback("no-such-version")
    assert not list(store.versions_dir.glob(".*"))  # no temporary file left


def test_rollback_without_history_is_an_error(tmp_path, two_models):
    store = ms.ModelStore(tmp_path / "store")
    store.seed(two_models[0])
    with pytest.raises(ms.ModelStoreError, match="no earlier version"):
        store.rollback()


def test_command_line_lists_rolls_back_and_publishes(tmp_path, two_models, capsys):
    a, b = two_models
    app = tmp_path / "app"
    store = ms.ModelStore(app / "model" / "anatpaste")
    va = store.seed(a)
    assert ms.main(["--app", str(app), "publish", str(b)]) == 0
    vb = store.current()
    assert vb != va
    assert ms.main(["--app", str(app), "rollback"]) == 0
    assert store.current() == va
    capsys.readouterr()
    assert ms.main(["--model-dir", str(store.root), "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith(f"* {va.name}")
    assert listed[1].startswith(f"  {vb.name}")
    assert ms.main(["--app", str(app), "rollback", "nope"]) == 2


def test_live_model_follows_the_published_version(tmp_path, two_models):
    a, b = two_models
    store = ms.ModelStore(tmp_path / "store")
    store.seed(a)
    live = ms.LiveModel(store)
    first = live.get()
    assert live.get() is first  # loaded once
    vb = store.publish(b, origin="train")
    assert live.get().version == vb.name
    assert live.get().threshold == pytest.approx(first.threshold + 1.0)


# ---- the gate's rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cand", "cur", "min_auc", "tol", "passed"),
    [
        (0.80, 0.80, 0.5, 0.0, True),
        (0.79, 0.80, 0.5, 0.02, True),
        (0.77, 0.80, 0.5, 0.02, False),
        (0.45, None, 0.5, 0.02, False),
        (0.60, None, 0.5, 0.02, True),
        (0.95, 0.80, 0.5, 0.0, True),
    ],
)
def test_gate_rule(cand, cur, min_auc, tol, passed):
    ok, reason = decide(cand, cur, min_auc, tol)
    assert ok is passed
    assert f"{cand:.3f}" in reason


# ---- training progress -----------------------------------------------------------------------------------


def test_stats_writer_records_progress_and_the_end(tmp_path):
    w = StatsWriter(tmp_path / "s.json", min_interval=0.0)
    w.start(total=10)
    w.progress(TrainProgress(step=5, total=10, loss=0.5, images_per_s=10.0, synthetic_auc=0.8, best_synthetic_auc=0.8))
    s = read_stats(tmp_path / "s.json")
    assert (s["status"], s["step"], s["total"], s["loss"], s["synthetic_auc"]) == ("RUNNING", 5, 10, 0.5, 0.8)
    w.finish("published", published_version="v2")
    s = read_stats(tmp_path / "s.json")
    assert (s["status"], s["outcome"], s["published_version"]) == ("DONE", "published", "v2")


def _task(status, started, details=()):
    return {
        "status": status,
        "start_ts": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "details": list(details),
    }


def test_reconcile_trusts_monai_labels_task_status():
    now = time.time()
    running = {"status": "RUNNING", "started_at": now, "pid": 2**22 + 12345, "step": 3, "total": 9}
    assert reconcile(running, _task("RUNNING", now - 1))["step"] == 3
    stopped = reconcile(running, _task("STOPPED", now - 1))
    assert (stopped["status"], stopped["outcome"]) == ("STOPPED", "stopped")
    crashed = reconcile(running, _task("ERROR", now - 1))
    assert (crashed["status"], crashed["outcome"]) == ("ERROR", "failed")
    stale = reconcile({**running, "started_at": now - 3600}, _task("RUNNING", now))
    assert (stale["status"], stale["phase"], stale["step"]) == ("RUNNING", "starting", 0)
    died = reconcile({**running, "started_at": now - 3600}, _task("ERROR", now, ["ImportError: x"]))
    assert (died["outcome"], died["error"]) == ("failed", "ImportError: x")
    orphan = reconcile(running, None)  # a server restarted while a run was recorded as running
    assert orphan["status"] == "INTERRUPTED"


# ---- the image result ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [(0.5, 0.25), None])
def test_maps_nrrd_round_trip(tmp_path, spacing):
    heat = np.random.default_rng(0).random((30, 40), dtype=np.float32) * 7
    lung = heat > 3
    write_maps_nrrd(tmp_path / "m.nrrd", heat, lung, spacing, {"model_version": "v1"})
    h, m, header = read_maps_nrrd(tmp_path / "m.nrrd")
    assert np.array_equal(h, heat)
    assert np.array_equal(m, lung)
    assert list(header["sizes"]) == [2, 40, 30, 1]
    row, col = spacing or (1.0, 1.0)
    assert header["space directions"][1][0] == col
    assert header["space directions"][2][1] == row
    assert header["anatpaste_model_version"] == "v1"
    with pytest.raises(ValueError, match="shape"):
        write_maps_nrrd(tmp_path / "x.nrrd", heat, lung[:, :5], spacing)


def test_folder_datastore_sees_another_processs_scores_without_the_file_watcher(tmp_path):
    # The scoring subprocess writes datastore_v2.json from its own datastore object; the server's object must
    # show those scores on its next read even with MONAI Label's watcher off (as for the DICOMweb datastore).
    shutil.copy(ZHANGLAB / "test" / "NORMAL" / "IM-0001-0001.jpeg", tmp_path / "a.jpeg")
    shutil.copy(ZHANGLAB / "test" / "NORMAL" / "IM-0003-0001.jpeg", tmp_path / "b.jpeg")
    server = AnatPasteLocalDatastore(str(tmp_path), auto_reload=False)
    assert "anomaly_score" not in server.get_image_info("a")
    time.sleep(0.05)  # a distinct modification time on coarse file systems
    AnatPasteLocalDatastore(str(tmp_path), auto_reload=False).update_image_infos(
        {"a": {"anomaly_score": 3.5}, "b": {"anomaly_score": 1.0}}
    )
    assert server.get_image_info("a")["anomaly_score"] == 3.5
    assert server.json()["objects"]["b"]["image"]["info"]["anomaly_score"] == 1.0
    assert sorted(server.list_images()) == ["a", "b"]


def test_the_file_watchers_reconcile_never_shows_a_study_whose_delete_has_returned(tmp_path):
    # MONAI Label's watcher reconciles on every file event, from its own thread, on the server's datastore
    # object. Its version took a picture of the studies, and a delete answered meanwhile by the server was
    # undone in memory when the picture was put back: the deleted upload was listed again (seen as a flaky
    # test_server_hardening run under load). Here the delete request runs while the reconcile checks files.
    import threading

    for name in ("a", "b", "c"):
        shutil.copy(ZHANGLAB / "test" / "NORMAL" / "IM-0001-0001.jpeg", tmp_path / f"{name}.jpeg")
    server = AnatPasteLocalDatastore(str(tmp_path), auto_reload=False)
    delete = threading.Thread(target=server.remove_image, args=("b",))
    seen_after_delete: list[list[str]] = []
    checked: list[str] = []
    filename, list_files = server._filename, server._list_files

    def checking_files(image_id, ext):
        if "b" in checked and delete.ident is None:  # b's file was seen; now it is deleted
            delete.start()
            delete.join(0.5)  # returns at once unless the reconcile holds the datastore's lock
        checked.append(image_id)
        return filename(image_id, ext)

    def listing(*args):
        if not delete.is_alive():
            seen_after_delete.append(server.list_images())
        return list_files(*args)

    server._filename, server._list_files = checking_files, listing
    server.refresh()
    assert delete.ident is not None, checked  # the delete did run inside the reconcile
    delete.join(10)
    assert not delete.is_alive()
    assert all("b" not in ids for ids in seen_after_delete), seen_after_delete
    assert sorted(server.list_images()) == ["a", "c"]
    fresh = AnatPasteLocalDatastore(str(tmp_path), auto_reload=False, read_only=True)
    assert sorted(fresh.list_images()) == ["a", "c"]
    assert not (tmp_path / "b.jpeg").exists()


def test_the_archive_address_in_info_carries_no_credentials():
    from monailabel_app.main import public_url

    assert public_url("http://dr:s3cret@127.0.0.1:8042/dicom-web") == "http://127.0.0.1:8042/dicom-web"
    assert public_url("https://pacs.example/dicom-web") == "https://pacs.example/dicom-web"
    assert public_url("http://user@[::1]:8042/dw") == "http://[::1]:8042/dw"


def test_login_forwarding_turns_the_realms_answers_into_errors_a_client_can_act_on():
    from fastapi import HTTPException

    from monailabel_app.lib.auth_fix import LoginRequests, _token_uri

    with pytest.raises(HTTPException) as unreachable:
        LoginRequests.post(f"http://127.0.0.1:{free_port()}/token", data={}, timeout=5)
    assert unreachable.value.status_code == 502

    with pytest.raises(HTTPException) as missing:
        _token_uri(lambda: None)()
    assert missing.value.status_code == 502
    assert _token_uri(lambda: "http://realm/token")() == "http://realm/token"
