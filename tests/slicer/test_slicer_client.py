"""The Lib's HTTP client (requests underneath) against a local server: the contract, and every way a server
can misbehave."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import urllib3
from AnatPasteReviewLib.answers import ScoreResult
from AnatPasteReviewLib.client import (
    AnatPasteClient,
    AuthenticationError,
    BadResponseError,
    ServerResponseError,
    ServerTimeoutError,
    ServerUnreachableError,
    Timeouts,
    TrainingAlreadyRunningError,
    TrainingStatus,
    normalize_server_url,
)
from AnatPasteReviewLib.images import read_result_maps
from requests_toolbelt import MultipartDecoder
from slicer_fake_server import drip, hang, status, test_maps, truncated

FAST = Timeouts(connect=0.5, read=0.5, total=2.0)


def client(url: str, timeouts: Timeouts = FAST) -> AnatPasteClient:
    return AnatPasteClient(url, timeouts=timeouts)


# ------------------------------------------------------------------------------------------ contract
def test_info_reports_model_version_threshold_trainer(fake):
    info = client(fake.url).info()
    assert info.model_available
    assert info.trainer_available
    assert (info.model_version, info.threshold, info.image_size) == ("v1", 2.5, 64)
    assert info.training.status == "NONE"
    assert not info.training.running


def test_score_by_id_returns_json_and_maps_in_the_image_grid(fake):
    result = client(fake.url).score(image_id="study-a")
    assert (result.score, result.label, result.threshold, result.model_version) == (
        3.0,
        "abnormal",
        2.5,
        "v1",
    )
    assert result.abnormal
    assert result.shape == (48, 64)
    maps = read_result_maps(result.maps_nrrd, result.shape)
    heat, mask = test_maps((48, 64))
    np.testing.assert_array_equal(maps.heatmap, heat)
    np.testing.assert_array_equal(maps.lung_mask, mask)
    (call,) = fake.calls("POST", "/infer/anatpaste")
    assert call.query == {"image": "study-a", "output": "all"}
    assert call.body == b""


def test_the_heatmap_colour_follows_the_server_and_an_older_server_colours_every_map():
    base = {"score": 1.0, "label": "normal", "threshold": 2.0, "model_version": "m-1"}
    quiet = ScoreResult.from_json({**base, "heatmap_coloured": False})
    assert not quiet.heatmap_coloured
    assert quiet.summary("a.png") == "Scored a.png: normal. No heatmap colour below the threshold."
    assert ScoreResult.from_json(base).heatmap_coloured  # a server before the field
    assert ScoreResult.from_json({**base, "label": "abnormal", "heatmap_coloured": True}).summary("a.png") == (
        "Scored a.png: abnormal."
    )


def test_score_json_only(fake):
    result = client(fake.url).score(image_id="study-b", maps=False)
    assert result.maps_nrrd is None
    assert result.shape == (40, 40)
    assert fake.calls("POST", "/infer/anatpaste")[0].query["output"] == "json"


def test_score_upload_sends_the_file_as_multipart(fake, tmp_path):
    path = tmp_path / "chest.png"
    path.write_bytes(fake.state.images["study-b"]["data"])
    result = client(fake.url).score(path=path)
    assert result.shape == (40, 40)
    assert result.image is None
    (call,) = fake.calls("POST", "/infer/anatpaste")
    parts = call.multipart()
    assert parts["file"] == ("chest.png", path.read_bytes())
    assert parts["params"] == (None, b"{}")
    assert call.query == {"output": "all"}


def test_dicom_without_suffix_is_uploaded_with_dcm_name(fake, tmp_path):
    path = tmp_path / "1.2.840.113619.2.55"  # as Slicer's DICOM database names files
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    with pytest.raises(ServerResponseError) as err:  # the fake refuses non-PNG with 422
        client(fake.url).score(path=path)
    assert err.value.status == 422
    assert "UnreadableImageError" in str(err.value)
    filename, _ = fake.calls("POST", "/infer/anatpaste")[0].multipart()["file"]
    assert filename == "1.2.840.113619.2.55.dcm"


def test_score_needs_exactly_one_input(fake):
    with pytest.raises(ValueError, match="exactly one"):
        client(fake.url).score()
    with pytest.raises(ValueError, match="exactly one"):
        client(fake.url).score(image_id="a", path="b")


def test_review_is_stored_as_form_field_info(fake):
    c = client(fake.url)
    assert c.set_review("study-a", "normal") == {"review": "normal"}
    (call,) = fake.calls("PUT", "/datastore/image/info")
    assert call.query == {"image": "study-a"}
    assert json.loads(call.form()["info"]) == {"review": "normal"}
    assert c.image_info("study-a")["review"] == "normal"
    with pytest.raises(ValueError, match="review must be"):
        c.set_review("study-a", "fine")


def test_next_study_download_and_empty_worklist(fake, tmp_path):
    c = client(fake.url)
    assert c.next_study() == "study-a"
    path = c.download_image("study-a", tmp_path)
    assert path.endswith("study-a.png")
    with open(path, "rb") as f:
        assert f.read() == fake.state.images["study-a"]["data"]
    for image in fake.state.images.values():
        image["info"]["review"] = "abnormal"
    assert c.next_study() is None


def test_download_names_are_sanitised(fake, tmp_path):
    fake.state.images["../evil"] = dict(fake.state.images["study-a"])
    path = client(fake.url).download_image("../evil", tmp_path)
    assert path == str(tmp_path / "evil.png")


def test_upload_returns_the_new_id(fake, tmp_path):
    path = tmp_path / "new study.png"
    path.write_bytes(fake.state.images["study-a"]["data"])
    assert client(fake.url).upload_image(path) == "new study"
    assert "new study" in fake.state.images


def test_training_start_progress_conflict_and_stop(fake):
    c = client(fake.url)
    assert c.training_status().status == "NONE"
    c.start_training({"steps": 5})
    assert json.loads(fake.calls("POST", "/train/anatpaste")[0].body) == {"steps": 5}
    with pytest.raises(TrainingAlreadyRunningError) as err:
        c.start_training({"steps": 5})
    assert err.value.status == 429
    t = c.training_status()
    assert t.running
    assert (t.step, t.total, t.loss, t.synthetic_auc) == (1, 5, 0.5, 0.75)
    assert t.fraction == pytest.approx(0.2)
    c.stop_training()
    assert c.training_status().status == "STOPPED"


def test_training_to_completion_publishes_a_new_version(fake):
    c = client(fake.url)
    c.start_training({"steps": 2})
    statuses = [c.training_status() for _ in range(3)]
    assert statuses[-1].status == "DONE"
    assert statuses[-1].published_version == "v2"
    assert c.info().model_version == "v2"


def test_task_status_wins_over_stale_stats():
    t = TrainingStatus.from_json(
        {"status": "RUNNING", "step": 3, "total": 9},
        {"status": "ERROR", "details": ["x", "CUDA out of memory"]},
    )
    assert t.status == "ERROR"
    assert not t.running
    assert t.message == "CUDA out of memory"
    assert TrainingStatus.from_json({"status": "DONE", "outcome": "rejected"}).outcome == "rejected"


def test_login_sends_password_grant_and_uses_the_token(fake):
    fake.state.auth = True
    c = client(fake.url)
    assert c.auth_enabled()
    with pytest.raises(AuthenticationError) as err:
        c.info()
    assert err.value.status == 401
    assert "log in first" in str(err.value)
    with pytest.raises(AuthenticationError):
        c.login("doc", "wrong")
    assert c.login("doc", "pw") == "secret-token"
    assert c.info().model_available
    assert fake.calls("GET", "/info/")[-1].headers["authorization"] == "Bearer secret-token"


def test_url_normalisation():
    assert normalize_server_url(" 127.0.0.1:8000/ ") == "http://127.0.0.1:8000"
    assert normalize_server_url("https://x.org/monai/") == "https://x.org/monai"
    for bad, why in (
        ("", "enter the server"),
        ("ftp://x", "http:// or https://"),
        ("http://", "no host"),
        ("http://x:notaport", "bad port"),
    ):
        with pytest.raises(ValueError, match=why):
            normalize_server_url(bad)
    with pytest.raises(ValueError, match="connect must be > 0"):
        Timeouts(connect=0)


def test_path_prefix_is_kept(fake):
    """A server behind a reverse proxy under /monai: every call goes below the prefix."""
    c = client(fake.url + "/monai")
    with pytest.raises(ServerResponseError) as err:
        c.info()
    assert err.value.status == 404
    assert fake.state.requests[-1].path == "/monai/info/"


# ---------------------------------------------------------------------------------- misbehaviour
def test_refused_connection_is_readable(refused_url):
    with pytest.raises(ServerUnreachableError, match="connection refused.*Is the server running"):
        client(refused_url).info()


def test_connect_timeout(silent_url):
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError, match="within 0.5 s"):
        client(silent_url).info()
    assert time.monotonic() - t0 < 2.0


def test_read_timeout(fake):
    fake.on("GET", "/info/", hang(3.0))
    t0 = time.monotonic()
    with pytest.raises(ServerTimeoutError, match="did not answer GET /info/ within 0.5 s"):
        client(fake.url).info()
    assert time.monotonic() - t0 < 2.0


def test_total_deadline_stops_a_dripping_server(fake):
    fake.on("GET", "/info/", drip(total_bytes=100, interval=0.1))
    t0 = time.monotonic()
    with pytest.raises(ServerTimeoutError, match="longer than 1 s"):
        client(fake.url, Timeouts(connect=0.5, read=0.5, total=1.0)).info()
    assert time.monotonic() - t0 < 2.5


@pytest.mark.parametrize(
    ("code", "body", "expected"),
    [
        (
            500,
            b'{"detail": "Failed to execute infer"}',
            "500 Internal Server Error (the server failed): Failed",
        ),
        (
            500,
            b"<html><body>Internal Server Error</body></html>",
            "500 Internal Server Error (the server failed): <html>",
        ),
        (
            422,
            b'{"detail": "NotARadiographError: colour photo"}',
            "cannot use this image): NotARadiographError",
        ),
        (
            422,
            b'{"detail": "NotAChestRadiographError: modality CT is not a radiograph"}',
            "(not a frontal chest radiograph, so it gets no score): NotAChestRadiographError: modality CT",
        ),
        (
            404,
            b'{"detail": [{"loc": ["query"], "msg": "x"}]}',
            '404 Not Found (not found on the server): [{"loc"',
        ),
        (503, b"", "503 Service Unavailable (the server is not ready)"),
    ],
)
def test_http_errors_become_readable_messages(fake, code, body, expected):
    fake.on("POST", "/infer/anatpaste", status(code, body))
    with pytest.raises(ServerResponseError) as err:
        client(fake.url).score(image_id="study-a")
    assert expected in str(err.value)
    assert err.value.status == code
    assert "/infer/anatpaste" in str(err.value)


def test_bad_json_is_a_bad_response(fake):
    fake.on("GET", "/info/", status(200, b"{not json"))
    with pytest.raises(BadResponseError, match="not JSON: {not json"):
        client(fake.url).info()


def test_info_without_models_is_refused(fake):
    fake.on("GET", "/info/", status(200, b'{"hello": "world"}'))
    with pytest.raises(BadResponseError, match="no 'models'"):
        client(fake.url).info()


def test_truncated_body(fake):
    fake.on("GET", "/info/", truncated(b'{"models": {}', claimed=500))
    with pytest.raises(BadResponseError, match="truncated|broke off"):
        client(fake.url).info()


def test_multipart_without_closing_boundary(fake):
    body = b'--B\r\nContent-Disposition: form-data; name="params"\r\n\r\n{}\r\n--B\r\n'
    fake.on("POST", "/infer/anatpaste", status(200, body, "multipart/form-data; boundary=B"))
    with pytest.raises(BadResponseError, match="could not be decoded: .*truncated"):
        client(fake.url).score(image_id="study-a")


def test_score_json_missing_fields(fake):
    fake.on("POST", "/infer/anatpaste", status(200, b'{"score": 1.0}'))
    with pytest.raises(BadResponseError, match="lacks label, threshold, model_version"):
        client(fake.url).score(image_id="study-a", maps=False)


def test_score_without_maps_when_maps_were_asked(fake):
    fake.on(
        "POST",
        "/infer/anatpaste",
        status(200, b'{"score": 1, "label": "normal", "threshold": 2, "model_version": "v"}'),
    )
    with pytest.raises(BadResponseError, match="without the heatmap"):
        client(fake.url).score(image_id="study-a")


def test_oversized_answer_is_refused(fake):
    fake.on("GET", "/info/", status(200, b"x" * 5000))
    c = AnatPasteClient(fake.url, timeouts=FAST, max_response_bytes=1000)
    with pytest.raises(BadResponseError, match="too large"):
        c.info()


# ------------------------------------------------------------------------------ requests underneath
def test_upload_with_an_odd_file_name_is_read_by_requests_toolbelt(fake, tmp_path):
    """requests encodes the upload; MONAI Label's own decoder (requests_toolbelt) must read it whole."""
    path = tmp_path / 'odd "name" é.png'
    path.write_bytes(fake.state.images["study-b"]["data"])
    client(fake.url).upload_image(path)
    (call,) = fake.calls("PUT", "/datastore/image")
    params, file = MultipartDecoder(call.body, call.headers["content-type"]).parts
    assert (params.content, file.content) == (b"{}", path.read_bytes())
    disposition = file.headers[b"Content-Disposition"].decode()
    assert 'filename="odd %22name%22 é.png"' in disposition  # the quotes cannot end the header field
    assert file.headers[b"Content-Type"] == b"image/png"


@pytest.mark.parametrize("read1", ["urllib3", "http.client"])
def test_body_is_read_as_it_arrives_with_and_without_urllib3s_read1(fake, monkeypatch, read1):
    """3D Slicer 5.2-5.8 bundle urllib3 1.26, which has no read1: the client then reads from http.client's
    response beneath. Either way a full answer arrives and a dripping server meets the total deadline."""
    if read1 == "http.client":
        for cls in (urllib3.response.HTTPResponse, urllib3.response.BaseHTTPResponse):
            monkeypatch.delattr(cls, "read1")
        assert not hasattr(urllib3.response.HTTPResponse, "read1")
    heat, _ = test_maps((48, 64))
    result = client(fake.url).score(image_id="study-a")
    np.testing.assert_array_equal(read_result_maps(result.maps_nrrd, result.shape).heatmap, heat)
    fake.on("GET", "/info/", drip(total_bytes=100, interval=0.1))
    t0 = time.monotonic()
    with pytest.raises(ServerTimeoutError, match="longer than 1 s"):
        client(fake.url, Timeouts(connect=0.5, read=0.5, total=1.0)).info()
    assert time.monotonic() - t0 < 2.5


def test_one_connection_serves_successive_calls(fake):
    """The requests.Session keeps the connection open between calls (the old client opened one per call)."""
    c = client(fake.url)
    for _ in range(3):
        c.info()
    ports = {r.client_port for r in fake.calls("GET", "/info/")}
    assert len(ports) == 1
