"""Structure of the extension, checked without 3D Slicer: CMake lists every file, the .ui has every widget
the code uses, parameter names match, the catalog entry follows Slicer's schema, the module file is a thin
shell, and the Lib imports without Qt (and, for the network/rule modules, without slicer-core)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from PIL import Image
from slicer_support import EXTENSION, LIB_DIR, MODULE_DIR

MODULE_FILE = MODULE_DIR / "AnatPasteReview.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "AnatPasteReview.ui"
LIB_MODULES = sorted(p.stem for p in LIB_DIR.glob("*.py") if p.stem != "__init__")
PURE_MODULES = [
    "answers",
    "client",
    "errors",
    "images",
    "multipart",
    "session",
    "signal",
    "tasks",
    "workflow",
]  # no slicer, no vtk


def cmake_list(text: str, variable: str) -> list[str]:
    m = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert m, f"{variable} not found"
    return [line.strip() for line in m.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def module_cmake() -> tuple[list[str], list[str]]:
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    name = re.search(r"set\(MODULE_NAME (\w+)\)", text).group(1)
    assert name == "AnatPasteReview"
    expand = [s.replace("${MODULE_NAME}", name) for s in cmake_list(text, "MODULE_PYTHON_SCRIPTS")]
    resources = [s.replace("${MODULE_NAME}", name) for s in cmake_list(text, "MODULE_PYTHON_RESOURCES")]
    return expand, resources


def ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    widgets = {}
    for w in root.iter("widget"):
        name = w.get("name")
        assert name not in widgets, f"duplicate widget name {name} in the .ui"
        widgets[name] = w
    return widgets


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def class_node(name: str) -> ast.ClassDef:
    return next(n for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name == name)


# ------------------------------------------------------------------------------------------ CMake
def test_every_python_file_and_resource_is_listed_in_cmake():
    scripts, resources = module_cmake()
    on_disk = sorted(str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*.py"))
    assert sorted(scripts) == on_disk
    res_on_disk = sorted(str(p.relative_to(MODULE_DIR)) for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file())
    assert sorted(resources) == res_on_disk
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in text
    assert "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_no_tests_or_tools_inside_the_module_folder():
    """Slicer loads every .py of a module path as a module: only the module file sits at the top."""
    assert [p.name for p in MODULE_DIR.glob("*.py")] == ["AnatPasteReview.py"]
    assert not list(MODULE_DIR.rglob("test_*.py"))


def test_extension_cmake_metadata():
    text = (EXTENSION / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(AnatPaste\)$", text, re.M)
    meta = dict(re.findall(r'set\((EXTENSION_\w+) "(.*?)"\)', text, re.S))
    for key in (
        "HOMEPAGE",
        "CATEGORY",
        "CONTRIBUTORS",
        "DESCRIPTION",
        "ICONURL",
        "SCREENSHOTURLS",
        "DEPENDS",
    ):
        assert meta.get(f"EXTENSION_{key}"), f"EXTENSION_{key} missing"
    assert "add_subdirectory(AnatPasteReview)" in text
    assert "include(${Slicer_EXTENSION_GENERATE_CONFIG})" in text
    assert "include(${Slicer_EXTENSION_CPACK})" in text
    assert meta["EXTENSION_ICONURL"].endswith("AnatPasteReview/Resources/Icons/AnatPasteReview.png")
    assert meta["EXTENSION_SCREENSHOTURLS"].endswith("slicer_extension/docs/screenshot.png")
    assert (EXTENSION / "docs" / "screenshot.png").is_file()


def test_catalog_entry_follows_slicers_schema():
    """Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json: required keys, no others."""
    entry = json.loads((EXTENSION / "AnatPaste.json").read_text())
    allowed = {
        "$schema": str,
        "category": str,
        "scm_url": str,
        "scm_revision": str,
        "scm_type": str,
        "build_dependencies": list,
        "build_subdirectory": str,
        "enabled": bool,
        "tier": int,
    }
    assert {"$schema", "category", "scm_url"} <= set(entry) <= set(allowed)
    for key, value in entry.items():
        assert isinstance(value, allowed[key]), key
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry.get("scm_type", "git") in ("git", "local")
    assert entry.get("tier", 5) in (1, 3, 5)
    text = (EXTENSION / "CMakeLists.txt").read_text()
    assert f'set(EXTENSION_CATEGORY "{entry["category"]}")' in text


def test_icon_is_a_128px_png():
    icon = Image.open(MODULE_DIR / "Resources" / "Icons" / "AnatPasteReview.png")
    assert icon.format == "PNG"
    assert icon.size == (128, 128)


# ---------------------------------------------------------------------------------------------- UI
def test_every_widget_used_in_code_exists_in_the_ui():
    widgets = ui_widgets()
    used = set()
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Attribute) and (
            (isinstance(node.value, ast.Attribute) and node.value.attr == "ui")
            or (isinstance(node.value, ast.Name) and node.value.id == "ui")
        ):
            used.add(node.attr)
    widget_class = class_node("AnatPasteReviewWidget")
    tables = {}
    for stmt in widget_class.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            tables[stmt.targets[0].id] = ast.literal_eval(stmt.value)
    used |= set(tables["BUTTONS"]) | set(tables["LABELS"])
    assert used, "found no widget references"
    missing = sorted(used - set(widgets))
    assert not missing, f"used in AnatPasteReview.py but absent from the .ui: {missing}"
    from AnatPasteReviewLib.workflow import Controls

    fields = {f.name for f in dataclasses.fields(Controls)}
    assert set(tables["BUTTONS"].values()) <= fields
    assert set(tables["LABELS"].values()) <= fields
    for name in tables["BUTTONS"]:
        assert widgets[name].get("class") == "QPushButton", name
    for name in tables["LABELS"]:
        assert widgets[name].get("class") == "QLabel", name


def test_slicer_parameter_names_match_the_parameter_node():
    wrapper = class_node("AnatPasteReviewParameterNode")
    decorators = [d.id if isinstance(d, ast.Name) else ast.unparse(d) for d in wrapper.decorator_list]
    assert decorators == ["parameterNodeWrapper"]
    fields = {s.target.id for s in wrapper.body if isinstance(s, ast.AnnAssign)}
    bound = {}
    for name, w in ui_widgets().items():
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", f"{name}: SlicerParameterName must be a dynamic property"
                bound[prop.find("string").text] = name
    assert set(bound) == fields, f"ui binds {sorted(bound)}, parameter node has {sorted(fields)}"


def test_ui_declares_its_custom_widgets_and_connects_the_scene():
    root = ET.parse(UI_FILE).getroot()
    assert root.find("class").text == "AnatPasteReview"
    declared = {c.find("class").text for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    custom = {c for c in used if not c.startswith("Q")}
    assert custom <= declared, f"undeclared custom widgets: {sorted(custom - declared)}"
    connections = {(c.find("receiver").text, c.find("slot").text) for c in root.iter("connection")}
    assert ("radiographSelector", "setMRMLScene(vtkMRMLScene*)") in connections


# ------------------------------------------------------------------------------------ module file
def test_module_file_is_thin_and_slicer_conventional():
    tree = module_tree()
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert classes == [
        "AnatPasteReview",
        "AnatPasteReviewParameterNode",
        "AnatPasteReviewWidget",
        "AnatPasteReviewLogic",
        "SlicerLayout",
        "AnatPasteReviewTest",
    ]
    bases = {n.name: [ast.unparse(b) for b in n.bases] for n in tree.body if isinstance(n, ast.ClassDef)}
    assert bases["AnatPasteReview"] == ["ScriptedLoadableModule"]
    assert bases["AnatPasteReviewWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    # The Logic is the Lib's (tested on slicer-core) with Slicer's reader, layout and parameter node plugged in.
    assert bases["AnatPasteReviewLogic"] == ["ReviewLogic", "ScriptedLoadableModuleLogic"]
    logic = class_node("AnatPasteReviewLogic")
    assert [n.name for n in logic.body if isinstance(n, ast.FunctionDef)] == ["__init__", "getParameterNode"]
    assert logic.end_lineno - logic.lineno < 30
    assert bases["AnatPasteReviewTest"] == ["ScriptedLoadableModuleTest"]
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"http", "urllib", "requests", "httpx", "json", "cgi"}, "network code belongs in the Lib"
    assert len(MODULE_FILE.read_text().splitlines()) < 360  # MONAI Label's own plugin file: 2,527 lines
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        assert fn.end_lineno - fn.lineno < 45, f"{fn.name} is {fn.end_lineno - fn.lineno} lines: move work to the Lib"
    test_methods = [
        n.name
        for n in class_node("AnatPasteReviewTest").body
        if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
    ]
    assert len(test_methods) >= 3


def test_names_the_module_imports_from_the_lib_exist():
    checked = 0
    for node in ast.walk(module_tree()):
        if not (isinstance(node, ast.ImportFrom) and node.module.startswith("AnatPasteReviewLib")):
            continue
        for alias in node.names:
            if node.module == "AnatPasteReviewLib":  # a submodule
                importlib.import_module(f"AnatPasteReviewLib.{alias.name}")
            else:
                assert hasattr(importlib.import_module(node.module), alias.name), f"{node.module}.{alias.name}"
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("name", LIB_MODULES)
def test_lib_modules_import_with_slicer_core_and_never_touch_qt(name):
    importlib.import_module(f"AnatPasteReviewLib.{name}")
    tree = ast.parse((LIB_DIR / f"{name}.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"qt", "ctk", "PythonQt", "httpx", "cgi"}  # requests ships with Slicer: allowed
    if name in PURE_MODULES:
        assert not imported & {"slicer", "vtk", "vtkmodules"}


def test_network_and_rule_modules_import_without_slicer_core():
    """In a fresh interpreter where slicer, vtk and qt cannot be imported at all."""
    code = (
        "import sys\n"
        "for blocked in ('slicer', 'vtk', 'vtkmodules', 'qt', 'ctk'):\n"
        "    sys.modules[blocked] = None\n"
        f"sys.path.insert(0, {str(MODULE_DIR)!r})\n"
        f"for name in {PURE_MODULES!r}:\n"
        "    __import__('AnatPasteReviewLib.' + name)\n"
        "try:\n"
        "    import AnatPasteReviewLib.scene\n"
        "except ImportError:\n"
        "    print('scene needs slicer: ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scene needs slicer: ok"


@pytest.mark.parametrize("path", [MODULE_FILE, *sorted(LIB_DIR.glob("*.py"))], ids=lambda p: p.name)
def test_sources_parse_as_python_3_9(path):
    """3D Slicer 5.2-5.8 bundle Python 3.9: no match statements, parenthesised context managers, etc."""
    ast.parse(path.read_text(), feature_version=(3, 9))
