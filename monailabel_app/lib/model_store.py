"""Published model versions: write-once version files, an atomically switched ``current.pt``, rollback.

Layout of the store folder (``<app>/model/anatpaste`` by default)::

    current.pt        symlink -> versions/<version>.pt (switched with one rename: never half-written)
    versions/         one immutable file per version, never deleted by the app
    versions.json     what each version is (origin, parent, metrics, training data) and the switch history
    candidates/       training output before the sanity gate; emptied at the start of every training
    .lock             serialises publish / rollback between the server, the trainer and this CLI

Command line (the server need not be stopped; it loads the new ``current.pt`` at its next request)::

    python -m monailabel_app.lib.model_store --app monailabel_app list
    python -m monailabel_app.lib.model_store --app monailabel_app rollback            # to the previous one
    python -m monailabel_app.lib.model_store --app monailabel_app rollback VERSION
    python -m monailabel_app.lib.model_store --app monailabel_app publish FILE        # import a model file
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from anatpaste.errors import ModelFileError
from anatpaste.model.file import load_model

CURRENT = "current.pt"
VERSIONS = "versions"
MANIFEST = "versions.json"
CANDIDATES = "candidates"


class ModelStoreError(RuntimeError):
    """A publish or rollback that cannot be done (unknown version, nothing to roll back to, ...)."""


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path``, fsync, rename: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


MAX_VERSION_LENGTH = 200
_VERSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")


def check_version_name(version: object) -> str:
    """A version is a file name in ``versions/`` without ``.pt``: refuse paths (``../x``, ``/x``), names
    starting with a dot and names too long for a file name (a rollback to ``../../outside`` published a
    file outside the store, and a 5000-character name ended in a traceback).

    Raises:
        ModelStoreError: ``version`` is not a plain version name.
    """
    if not isinstance(version, str) or not version:
        raise ModelStoreError(f"a version name must be a non-empty string, got {version!r}")
    if len(version) > MAX_VERSION_LENGTH:
        raise ModelStoreError(f"a version name is at most {MAX_VERSION_LENGTH} characters, got {len(version)}")
    if version.startswith(".") or not set(version) <= _VERSION_CHARS:
        raise ModelStoreError(f"{version!r} is not a version name (letters, digits, _ . + -; see `list`)")
    return version


def safe_origin(origin: str) -> str:
    """``origin`` as the start of a version name: a seed file's stem may hold any character."""
    cleaned = "".join(c if c in _VERSION_CHARS and c not in ".+-" else "_" for c in origin)[:40]
    return cleaned or "model"


@dataclass(frozen=True)
class Version:
    """One published model version."""

    name: str
    path: Path


class ModelStore:
    """The versions of one model (see the module docstring for the layout).

    Example:
        >>> import tempfile
        >>> store = ModelStore(tempfile.mkdtemp())
        >>> store.current() is None
        True
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / VERSIONS
        self.candidates_dir = self.root / CANDIDATES
        self.current_link = self.root / CURRENT
        self.manifest_path = self.root / MANIFEST
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.root / ".lock"), timeout=120)

    # ---- reading -------------------------------------------------------------------------------------

    def current(self) -> Version | None:
        """The published version, or None before the first publish."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        except OSError as err:  # current.pt exists but is not a link: written by hand or by another tool
            raise ModelStoreError(f"{self.current_link} is not a link into {self.versions_dir}: {err}") from err
        path = (self.root / target).resolve()
        if path.parent != self.versions_dir.resolve():
            raise ModelStoreError(f"{self.current_link} points outside {self.versions_dir}: {target}")
        return Version(path.stem, path)

    def manifest(self) -> dict[str, Any]:
        try:
            with open(self.manifest_path) as f:
                data = json.load(f)
        except FileNotFoundError:
            data = {}
        data.setdefault("versions", [])
        data.setdefault("history", [])
        return data

    def versions(self) -> list[dict[str, Any]]:
        """Every version file with its manifest entry, oldest first."""
        entries = {e["version"]: e for e in self.manifest()["versions"]}
        out = []
        for p in sorted(self.versions_dir.glob("*.pt"), key=lambda p: p.stat().st_mtime):
            out.append({"version": p.stem, **entries.get(p.stem, {}), "file": str(p)})
        return out

    def entry(self, version: str) -> dict[str, Any]:
        for e in self.manifest()["versions"]:
            if e["version"] == version:
                return e
        return {}

    # ---- writing -------------------------------------------------------------------------------------

    def new_candidate_path(self) -> Path:
        """A fresh path in ``candidates/`` for a training run's output."""
        self.candidates_dir.mkdir(parents=True, exist_ok=True)
        return self.candidates_dir / f"candidate-{uuid.uuid4().hex[:12]}.pt"

    def clear_candidates(self) -> None:
        """Remove what killed or rejected runs left behind (only one training runs at a time)."""
        if self.candidates_dir.is_dir():
            shutil.rmtree(self.candidates_dir, ignore_errors=True)

    def add_version(
        self,
        model_file: str | os.PathLike,
        origin: str,
        meta: dict[str, Any] | None = None,
        move: bool = False,
    ) -> Version:
        """Verify ``model_file`` and store it as a new immutable version (not yet published).

        Args:
            model_file: an AnatPaste model file.
            origin: a short word for the version name: ``default``, ``train``, ``import``, ...
            meta: stored in ``versions.json`` (metrics, parent version, training data, ...).
            move: rename the file into the store instead of copying it (same file system only).

        Raises:
            ModelFileError: the file does not load as an AnatPaste model.
        """
        model_file = Path(model_file)
        load_model(model_file)
        sha = file_sha256(model_file)
        with self._lock:
            for e in self.manifest()["versions"]:
                if e.get("sha256") == sha and (self.versions_dir / f"{e['version']}.pt").is_file():
                    if move:
                        model_file.unlink(missing_ok=True)
                    return Version(e["version"], self.versions_dir / f"{e['version']}.pt")
            name = f"{safe_origin(origin)}-{sha[:12]}"
            dest = self.versions_dir / f"{name}.pt"
            tmp = self.versions_dir / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                if move:
                    os.replace(model_file, tmp)
                else:
                    shutil.copyfile(model_file, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                if file_sha256(tmp) != sha:
                    raise ModelStoreError(f"{model_file} changed while it was being stored")
                load_model(tmp)
                os.replace(tmp, dest)
                _fsync_dir(self.versions_dir)
            finally:
                tmp.unlink(missing_ok=True)
            manifest = self.manifest()
            manifest["versions"].append(
                {"version": name, "sha256": sha, "origin": origin, "created": utc_now(), **(meta or {})}
            )
            write_json_atomic(self.manifest_path, manifest)
        return Version(name, dest)

    def activate(self, version: str, action: str = "publish") -> Version:
        """Point ``current.pt`` at ``version`` with one atomic rename, after checking the file loads."""
        check_version_name(version)
        path = self.versions_dir / f"{version}.pt"
        if not path.is_file():
            known = ", ".join(v["version"] for v in self.versions()) or "none"
            raise ModelStoreError(f"unknown model version {version!r}; known versions: {known}")
        load_model(path)
        with self._lock:
            previous = self.current()
            tmp = self.root / f".current.{uuid.uuid4().hex}.tmp"
            os.symlink(os.path.join(VERSIONS, path.name), tmp)
            try:
                os.replace(tmp, self.current_link)
            finally:
                if tmp.is_symlink():
                    tmp.unlink()
            _fsync_dir(self.root)
            manifest = self.manifest()
            manifest["history"].append(
                {
                    "at": utc_now(),
                    "action": action,
                    "version": version,
                    "previous": previous.name if previous else None,
                }
            )
            write_json_atomic(self.manifest_path, manifest)
        return Version(version, path)

    def publish(
        self,
        model_file: str | os.PathLike,
        origin: str,
        meta: dict[str, Any] | None = None,
        move: bool = False,
    ) -> Version:
        """:meth:`add_version` then :meth:`activate`: the new model serves from the next request on."""
        version = self.add_version(model_file, origin, meta, move=move)
        return self.activate(version.name, action="publish")

    def seed(self, model_file: str | os.PathLike) -> Version:
        """Publish ``model_file`` if nothing is published yet; return the current version either way."""
        with self._lock:
            current = self.current()
            if current is not None:
                return current
            origin = Path(model_file).stem.replace("-", "_") or "seed"
            version = self.add_version(model_file, origin, {"source": str(model_file)})
            return self.activate(version.name, action="seed")

    def rollback(self, version: str | None = None) -> Version:
        """Switch back to ``version``, or to the version that was current before the present one."""
        if version is None:
            current = self.current()
            for event in reversed(self.manifest()["history"]):
                if event.get("version") == (current.name if current else None) and event.get("previous"):
                    version = event["previous"]
                    break
            if version is None:
                raise ModelStoreError("no earlier version to roll back to; give a version name (see `list`)")
        return self.activate(version, action="rollback")


class LiveModel:
    """The published model, loaded once and reloaded when ``current.pt`` is switched (checked per call).

    Shared by the infer task, the scoring method and the strategy of one server process.
    """

    def __init__(self, store: ModelStore, device: str = "cpu") -> None:
        self.store = store
        self.device = device
        self._lock = threading.Lock()
        self._loaded: tuple[str, Any] | None = None  # (version, Detector)

    def get(self):
        """The :class:`anatpaste.score.detector.Detector` of the current version.

        Raises:
            ModelStoreError: nothing is published yet.
            ModelFileError: the published file does not load.
        """
        from anatpaste.score.detector import Detector

        version = self.store.current()
        if version is None:
            raise ModelStoreError(f"no model published in {self.store.root} yet")
        with self._lock:
            if self._loaded is None or self._loaded[0] != version.name:
                det = Detector(load_model(version.path), version=version.name, device=self.device)
                self._loaded = (version.name, det)
            return self._loaded[1]

    def version(self) -> str | None:
        current = self.store.current()
        return current.name if current else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monailabel_app.lib.model_store", description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--app", help="the MONAI Label app folder (store: APP/model/anatpaste)")
    where.add_argument("--model-dir", help="the store folder itself (as given with --conf model_dir)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="versions, oldest first; * marks the published one")
    r = sub.add_parser("rollback", help="publish an earlier version again")
    r.add_argument("version", nargs="?", help="default: the version published before the current one")
    u = sub.add_parser("publish", help="store a model file as a new version and publish it")
    u.add_argument("file")
    args = p.parse_args(argv)

    root = Path(args.model_dir) if args.model_dir else Path(args.app) / "model" / "anatpaste"
    if not root.is_dir():
        print(f"no model store at {root}", file=sys.stderr)
        return 2
    store = ModelStore(root)
    try:
        if args.command == "list":
            current = store.current()
            for v in store.versions():
                mark = "*" if current and v["version"] == current.name else " "
                auc = v.get("gate", {}).get("candidate_auc")
                extra = f"  synthetic_auc={auc:.3f}" if isinstance(auc, float) else ""
                print(f"{mark} {v['version']}  {v.get('created', '?')}  {v.get('origin', '?')}{extra}")
        elif args.command == "rollback":
            print(f"current: {store.rollback(args.version).name}")
        else:
            print(f"current: {store.publish(args.file, origin='import', meta={'source': args.file}).name}")
    except (ModelStoreError, ModelFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
