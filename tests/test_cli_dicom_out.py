"""``anatpaste score INPUT --dicom-out DIR``: DICOM inputs get their SR, lung SEG and heatmap capture as files;
PNG/JPEG inputs get none, and the CSV is unchanged."""

from __future__ import annotations

import csv
import shutil

import highdicom as hd
import pydicom
import pytest
from shared_data import SHARED_DATA, zhang_files

from anatpaste.cli import main


def test_dicom_out_writes_the_objects_of_each_dicom_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    src = SHARED_DATA / "dicom" / "RG1_UNCR.dcm"
    shutil.copy(src, folder / "film.dcm")
    shutil.copy(zhang_files("test", "NORMAL", n=1)[0], folder / "photo.jpeg")
    out, table = tmp_path / "dicom", tmp_path / "scores.csv"
    assert main(["score", str(folder), "--output", str(table), "--dicom-out", str(out)]) == 0
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(table.open())}
    assert set(rows) == {"film.dcm", "photo.jpeg"} and all(r["score"] for r in rows.values())
    assert sorted(p.name for p in out.iterdir()) == ["film_map.dcm", "film_seg.dcm", "film_sr.dcm"]
    source = pydicom.dcmread(src, stop_before_pixels=True)
    sr = hd.sr.srread(out / "film_sr.dcm")
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    group = sr.content.get_image_measurement_groups()[0]
    score = {m.name.value: m.value for m in group.get_measurements()}["AP001"]
    assert score == pytest.approx(float(rows["film.dcm"]["score"]), abs=1e-5)
    assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
    for kind in ("seg", "map"):
        assert pydicom.dcmread(out / f"film_{kind}.dcm").StudyInstanceUID == source.StudyInstanceUID
