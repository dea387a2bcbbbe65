"""Where the first model comes from: the shipped default, a --conf model_path, or nothing (503, no crash)."""

from __future__ import annotations

from server_env import make_client

from anatpaste.model.shipped import DEFAULT_MODEL
from anatpaste.score import Detector


def test_an_empty_store_is_seeded_from_the_shipped_default_model(tmp_path):
    client, app_dir, _ = make_client(tmp_path, {})
    with client:
        model = client.get("/info/").json()["models"]["anatpaste"]
        shipped = Detector.load(DEFAULT_MODEL)
        assert model["version"] == shipped.version  # "default-<sha256[:12]>", as the CLI names it
        assert model["image_size"] == shipped.image_size
        assert client.post("/infer/anatpaste?image=IM-0001-0001&output=json").json()["model_version"] == shipped.version
    current = app_dir / "model" / "anatpaste" / "current.pt"
    assert current.is_symlink()
    assert current.resolve().read_bytes() == DEFAULT_MODEL.read_bytes()  # a copy: the shipped file is never written


def test_missing_seed_model_gives_503_not_a_crash(tmp_path):
    client, app_dir, _ = make_client(tmp_path, {"model_path": str(tmp_path / "missing.pt")})
    with client:
        info = client.get("/info/").json()
        assert info["models"] == {}
        r = client.post("/infer/anatpaste?image=IM-0001-0001&output=json")
        assert r.status_code == 503
        assert "no model published" in r.json()["detail"]
        assert client.post("/infer/other?image=IM-0001-0001&output=json").status_code == 404
    assert not (app_dir / "model" / "anatpaste" / "current.pt").exists()
