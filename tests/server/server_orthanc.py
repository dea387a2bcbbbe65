"""Orthanc with its DICOMweb plugin on a free loopback port, for the DICOMweb datastore tests.

Needs the Debian packages ``orthanc`` and ``orthanc-dicomweb`` (``.ci/run`` installs them); their absence is
a test failure, not a skip.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid
from server_env import DICOM, require

from monailabel_app.launch import free_port, stop_process

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class Orthanc:
    """``Orthanc CONFIG.json`` with storage in ``tmp``, HTTP and DICOM on loopback only; stopped by PID."""

    def __init__(self, tmp: Path) -> None:
        require(ORTHANC)
        require(DICOMWEB_PLUGIN)
        self.http_port, dicom_port = free_port(), free_port()
        config = {
            "Name": "anatpaste-test",
            "StorageDirectory": str(tmp / "storage"),
            "IndexDirectory": str(tmp / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": dicom_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        config_path = tmp / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=1))
        self.log_path = tmp / "orthanc.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([str(ORTHANC), str(config_path)], stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.rest = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"Orthanc exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if self.rest.get("/system").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"Orthanc did not answer within 60 s: {self.log_path.read_text()[-2000:]}")

    def store(self, data: bytes) -> dict:
        r = self.rest.post("/instances", content=data)
        r.raise_for_status()
        return r.json()

    def instances(self) -> list[str]:
        return self.rest.get("/instances").json()

    def changes(self) -> list[dict]:
        return self.rest.get("/changes", params={"limit": 10000}).json()["Changes"]

    def last_edit(self) -> int:
        """Seq of the archive's last change that is an edit. Orthanc also logs StableSeries/Study/Patient a
        minute after an upload (StableAge): not a change to the archive, but a slow run under load saw them."""
        return max((c["Seq"] for c in self.changes() if not c["ChangeType"].startswith("Stable")), default=0)

    def stop(self) -> None:
        self.rest.close()
        stop_process(self.proc)
        self._log.close()


RADIOGRAPHS = ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "dx_thorax_mono1_small.dcm", "siim_cr_chest_mono2_jpeg.dcm"]


def _with_new_uids(path: Path, tmp: Path, modality: str | None = None, new_series: bool = False) -> tuple[Path, str]:
    """A copy with a new SOP Instance UID (the two SIIM files share one), optionally another modality."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if new_series:
        ds.SeriesInstanceUID = generate_uid()
    if modality:
        ds.Modality = modality
    out = tmp / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(out)
    return out, ds.SOPInstanceUID


def push_test_radiographs(orthanc: Orthanc) -> None:
    """Store the shared DICOM radiographs (5 CR/DX instances) and one non-radiograph ("OT") instance.

    Sets ``orthanc.uids`` (file name → SOP Instance UID), ``orthanc.other_uid`` (the OT one, never to be
    listed) and ``orthanc.files`` (UID → source file, for the unmodified ones).
    """
    tmp = orthanc.log_path.parent
    uids = {}
    for name in RADIOGRAPHS:
        path = require(DICOM / name)
        orthanc.store(path.read_bytes())
        uids[name] = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    mono1, uid = _with_new_uids(require(DICOM / "siim_cr_chest_header_mono1.dcm"), tmp)
    orthanc.store(mono1.read_bytes())
    uids["siim_cr_chest_header_mono1.dcm"] = uid
    other, other_uid = _with_new_uids(DICOM / "dx_thorax_mono1_small.dcm", tmp, modality="OT", new_series=True)
    orthanc.store(other.read_bytes())
    orthanc.uids, orthanc.other_uid = uids, other_uid
    orthanc.files = {uid: DICOM / name for name, uid in uids.items() if name in RADIOGRAPHS}
