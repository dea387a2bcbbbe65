"""Run AnatPasteReview's self-test (AnatPasteReviewTest) inside 3D Slicer and exit with its status.

This needs a real 3D Slicer (it cannot run on slicer-core: the module's widget, Slicer's file readers and
its slice views are part of the test). From the repository root::

    Slicer --no-splash --testing --no-main-window \\
        --additional-module-paths slicer_extension/AnatPasteReview \\
        --python-script slicer_extension/tools/run_selftest.py [--server http://127.0.0.1:8000]

``--server`` (or the environment variable ANATPASTE_SERVER_URL) adds the round trip against a running
AnatPaste server: next study, score, overlays, confirm normal. Without it that test reports "skipped".
"""

from __future__ import annotations

import argparse
import os
import sys
import unittest
from pathlib import Path

import slicer


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="a running AnatPaste server for the round-trip test")
    args = p.parse_args(argv)
    if args.server:
        os.environ["ANATPASTE_SERVER_URL"] = args.server
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "AnatPasteReview"))
    import AnatPasteReview

    suite = unittest.TestLoader().loadTestsFromTestCase(AnatPasteReview.AnatPasteReviewTest)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    slicer.util.exit(main(sys.argv[1:]))
