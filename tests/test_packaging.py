"""The install files agree: pyproject declares what requirements.txt installs, and monailabel comes only from
requirements-monailabel.txt, installed without its dependencies (its metadata pulls sam2 and a CUDA torch)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TEST_ONLY = {"slicer-core", "pytest", "ruff", "mypy"}  # requirements.txt's test section: not the package's needs


def _requirements(name: str) -> dict[str, Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / name).read_text().splitlines())
    reqs = [Requirement(line) for line in lines if line and not line.startswith("-")]
    return {canonicalize_name(r.name): r for r in reqs}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_pyproject_declares_what_requirements_txt_installs():
    project = _project()
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["server"]]
    env = _requirements("requirements.txt")
    for req in declared:
        pinned = env.get(canonicalize_name(req.name))
        assert pinned is not None, f"{req} is declared in pyproject.toml but not installed by requirements.txt"
        assert pinned.extras == req.extras, (req, pinned)
        if pinned.specifier != req.specifier:  # requirements.txt may pin a version inside the declared range
            versions = [s.version for s in pinned.specifier if s.operator == "=="]
            assert versions and req.specifier.contains(versions[0], prereleases=True), (req, pinned)
    assert set(env) - {canonicalize_name(r.name) for r in declared} == TEST_ONLY


def test_monailabel_is_installed_without_its_dependencies():
    assert "monailabel" not in _requirements("requirements.txt")  # it would pull sam2 and a CUDA torch
    assert str(_requirements("requirements-monailabel.txt")["monailabel"]) == "monailabel==0.8.5"
    steps = re.findall(r"pip install (.+)", (ROOT / "Makefile").read_text())
    assert steps[-3:] == ["-r requirements.txt", "--no-deps -r requirements-monailabel.txt", "--no-deps -e ."]
    readme = (ROOT / "README.md").read_text()
    assert "pip install --no-deps -r requirements-monailabel.txt" in readme
