"""The examples in anatpaste's docstrings run and print what they say (``pytest --doctest-modules anatpaste``
does the same; this file makes ``pytest tests`` run them too)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import anatpaste


def _examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder()
    found = []
    for info in sorted(pkgutil.walk_packages(anatpaste.__path__, "anatpaste."), key=lambda m: m.name):
        if info.name.endswith(".__main__"):  # runs the command line on import
            continue
        module = importlib.import_module(info.name)
        found += [t for t in finder.find(module, info.name) if t.examples]  # only objects defined in the module
    return found


EXAMPLES = _examples()


def test_the_examples_are_collected():
    names = {t.name for t in EXAMPLES}
    assert {"anatpaste.score.gaussian.GaussianScorer", "anatpaste.score.detector.Detector",
            "anatpaste.paste.anatpaste.AnatPaste"} <= names, names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda t: t.name)
def test_docstring_example(example: doctest.DocTest):
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(example, out=report.append)
    assert result.attempted == len(example.examples)
    assert result.failed == 0, "".join(report)
