"""The command line contract: ``anatpaste …`` and ``python -m anatpaste …``, JSON last lines, typed failures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import SHARED_DATA, zhang_files

from anatpaste.cli import main


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_evaluate_ends_with_one_json_line(tiny_model, tmp_path, capsys):
    normal, abnormal = tmp_path / "n", tmp_path / "a"
    normal.mkdir(), abnormal.mkdir()
    for i, p in enumerate(zhang_files("test", "NORMAL", n=6)):
        (normal / f"{i}.jpeg").write_bytes(p.read_bytes())
    for i, p in enumerate(zhang_files("test", "PNEUMONIA", n=6)):
        (abnormal / f"{i}.jpeg").write_bytes(p.read_bytes())
    assert main(["evaluate", "--normal", str(normal), "--abnormal", str(abnormal), "--model", str(tiny_model)]) == 0
    out = _last_json(capsys.readouterr().out)
    for key in ("auc", "ap", "spec_at_sens95", "spec_at_sens99"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["n_normal"] == 6 and out["n_abnormal"] == 6


def test_score_folder_writes_csv_with_errors_for_bad_files(tiny_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = zhang_files("test", "NORMAL", n=2)
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out_csv, overlays = tmp_path / "scores.csv", tmp_path / "overlays"
    rc = main(["score", str(folder), "--model", str(tiny_model), "--output", str(out_csv), "--overlays", str(overlays)])
    assert rc == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out_csv.open())}
    assert set(rows) == {p.name for p in good} | {"broken.png"}
    assert rows["broken.png"]["error"].startswith("UnreadableImageError")
    for p in good:
        assert float(rows[p.name]["score"]) > 0 and rows[p.name]["label"] in ("normal", "abnormal")
        assert (overlays / f"{p.stem}_overlay.png").is_file() and (overlays / f"{p.stem}_lungs.png").is_file()


def test_score_single_bad_file_fails_with_a_clear_message(tiny_model, tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"DICM" * 10)
    proc = subprocess.run([sys.executable, "-m", "anatpaste", "score", str(bad), "--model", str(tiny_model)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "could not score" in proc.stderr


def test_missing_model_file_is_a_typed_error_not_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "anatpaste", "score", str(zhang_files("test", "NORMAL", n=1)[0]),
         "--model", str(tmp_path / "none.pt")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "ModelFileError" in proc.stderr and "Traceback" not in proc.stderr


def test_segment_with_reference_reports_dice(tmp_path, capsys):
    images = SHARED_DATA / "lungmasks" / "images"
    sample = tmp_path / "img"
    sample.mkdir()
    names = sorted(p.name for p in images.glob("*.png"))[:3]
    assert len(names) == 3
    for n in names:
        (sample / n).write_bytes((images / n).read_bytes())
    out = tmp_path / "masks"
    ref = SHARED_DATA / "lungmasks" / "masks"
    assert main(["segment", str(sample), "--output", str(out), "--reference", str(ref)]) == 0
    res = _last_json(capsys.readouterr().out)
    assert res["n"] == 3 and 0.5 < res["dice"] <= 1 and 0.3 < res["iou"] <= res["dice"]
    assert sorted(p.name for p in out.iterdir()) == names


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("anatpaste")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "evaluate" in proc.stdout


@pytest.mark.parametrize("argv", [["train"], ["score"], ["evaluate", "--normal", "x"]])
def test_missing_arguments_exit_with_usage(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
