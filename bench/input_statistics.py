"""Write the input gate's picture statistics into a model file, fitted on the model's own training normals.

The normals are the folders recorded in the file (``payload["training"]["data"]``), read and segmented as
training read them (:class:`bench.default_model.TrainingNormals`); the statistics are
:func:`anatpaste.gate.picture.fit_input_statistics`. Everything else in the file is kept as it is.

    nice -n 10 .venv/bin/python bench/input_statistics.py anatpaste/weights/default.pt            # in place
    nice -n 10 .venv/bin/python bench/input_statistics.py anatpaste/weights/zhanglab_cpu.pt --out /tmp/z.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.gate.picture import KEY, with_input_statistics  # noqa: E402
from anatpaste.model.file import load_model, save_model  # noqa: E402
from anatpaste.score import Detector  # noqa: E402
from bench.default_model import TrainingNormals  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model file (read, and written unless --out)")
    ap.add_argument("--out", type=Path, help="write here instead of over the model file")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    payload = load_model(args.model)
    det = Detector(payload, version=args.model.stem)
    normals = TrainingNormals().of(det)
    out = with_input_statistics(payload, normals, encoder=det.encoder)
    save_model(out, args.out or args.model)
    stats = out[KEY]
    print(f"{args.out or args.model}: input statistics of {stats['n_normals']} normals "
          f"({len(normals.skipped)} skipped) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
