"""A server whose model file is missing still starts: /info lists no model, /infer answers 503."""

from __future__ import annotations

from server_env import make_client


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
