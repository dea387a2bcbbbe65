"""Data-parallel training under torchrun (Gloo on CPU here; NCCL on GPUs): two processes, one model file."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from shared_data import zhang_files

from anatpaste.model.file import load_model


def _train(tmp_path, out_name: str, nproc: int) -> dict:
    data = tmp_path / "normals"
    data.mkdir(exist_ok=True)
    for p in zhang_files("train", "NORMAL", n=16):
        (data / p.name).write_bytes(p.read_bytes())
    args = ["-m", "anatpaste", "train", "--normal", str(data), "--output", str(tmp_path / out_name), "--size", "64",
            "--steps", "4", "--batch-size", "4", "--eval-every", "2", "--device", "cpu"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*launcher, *args] if nproc > 1 else [sys.executable, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1, f"only rank 0 prints a summary: {proc.stdout[-2000:]}"
    return summaries[0]


def test_two_process_training_writes_one_model_trained_on_both_processes_batches(tmp_path):
    two = _train(tmp_path, "two.pt", nproc=2)
    assert two["world_size"] == 2
    one = _train(tmp_path, "one.pt", nproc=1)
    assert one["world_size"] == 1
    m2, m1 = load_model(tmp_path / "two.pt"), load_model(tmp_path / "one.pt")
    # Rank 0 draws the same batches in both runs: a different model means rank 1's gradients were averaged in.
    assert not torch.equal(m2["gaussian"]["mean"], m1["gaussian"]["mean"])
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["one.pt", "two.pt"]
