"""Benchmark: CPU training and scoring throughput of the AnatPaste network, fp32 vs bf16, side by side.

    python bench/cpu_train_throughput.py [--rounds 3] [--steps 4]

Every setting is measured in the same process, in interleaved rounds (so a neighbour's load hits all of them
alike), and the median round is kept. Settings: precision (fp32 / bf16 autocast), memory format
(channels_last or not), batch size, threads, torch.compile, the network step alone vs the full training step
(batch draw + paste + step, what ``anatpaste train`` runs), and scoring (encoder forward, batch 1 and 64).
Writes bench/results/cpu_train_throughput.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from anatpaste.data import load_image_set  # noqa: E402
from anatpaste.model import AnatPasteNet  # noqa: E402
from anatpaste.paste import AnatPaste  # noqa: E402
from anatpaste.precision import autocast, cpu_bf16_supported  # noqa: E402
from anatpaste.preprocess import NORM_MEAN, NORM_STD  # noqa: E402
from anatpaste.score.features import normalise_input  # noqa: E402
from anatpaste.train.step import pretext_step  # noqa: E402
from bench.common import SHARED_DATA, command_line, git_commit, machine, write_results  # noqa: E402


class Setting:
    """One way of running a training step (or a scoring forward); ``run`` does ``steps`` of them."""

    def __init__(self, name: str, *, bf16: bool, channels_last: bool = True, batch: int = 32, threads: int = 2,
                 compile: bool = False, paste: bool = False, scoring: bool = False) -> None:
        self.name, self.bf16, self.cl, self.batch, self.threads = name, bf16, channels_last, batch, threads
        self.compile, self.paste, self.scoring = compile, paste, scoring
        self.rates: list[float] = []
        self.error: str | None = None
        self._fn: Callable[[], None] | None = None

    def build(self, images: torch.Tensor, lungs: torch.Tensor) -> None:
        torch.manual_seed(0)
        net = AnatPasteNet(in_channels=1)
        if self.cl:
            net = net.to(memory_format=torch.channels_last)
        gen = torch.Generator().manual_seed(0)
        paster = AnatPaste()
        b = self.batch
        fmt = torch.channels_last if self.cl else torch.contiguous_format
        if self.scoring:
            enc = net.encoder.eval()
            model = torch.compile(enc) if self.compile else enc
            x = normalise_input(images[:b], NORM_MEAN, NORM_STD).contiguous(memory_format=fmt)

            @torch.no_grad()
            def fn() -> None:
                with autocast(x.device, self.bf16):
                    model(x)
            self._fn = fn
            return
        model = torch.compile(net) if self.compile else net
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10_000)
        labels = torch.cat([torch.zeros(b), torch.ones(b)]).long()
        fixed = images[:b].float() / 255.0
        fixed_pasted = paster(fixed, lungs[:b], generator=gen)

        def fn() -> None:
            if self.paste:
                idx = torch.randint(0, images.shape[0], (b,), generator=gen)
                x = images[idx].float() / 255.0
                xp = paster(x, lungs[idx], generator=gen)
            else:
                x, xp = fixed, fixed_pasted
            if not self.cl:  # pretext_step asks for channels_last; undo it for the contiguous setting
                batch = normalise_input(torch.cat([x, xp]), NORM_MEAN, NORM_STD).contiguous()
                with autocast(batch.device, self.bf16):
                    _, logits = model(batch)
                    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            else:
                pretext_step(model, x, xp, labels, opt, sched, (NORM_MEAN, NORM_STD), self.bf16)
        self._fn = fn

    def run(self, steps: int) -> None:
        if self.error or self._fn is None:
            return
        torch.set_num_threads(self.threads)
        try:
            self._fn()  # warm-up (and compilation)
            t = time.perf_counter()
            for _ in range(steps):
                self._fn()
            dt = time.perf_counter() - t
        except Exception as err:  # noqa: BLE001 - a setting that cannot run here is reported, not fatal
            self.error = f"{type(err).__name__}: {err}"[:300]
            return
        per_step = self.batch if self.scoring else 2 * self.batch
        self.rates.append(per_step * steps / dt)

    def result(self) -> dict[str, object]:
        out: dict[str, object] = {
            "setting": self.name, "kind": "scoring forward" if self.scoring else
            ("full step (draw + paste + step)" if self.paste else "network step"),
            "precision": "bf16" if self.bf16 else "fp32", "channels_last": self.cl, "batch": self.batch,
            "threads": self.threads, "compile": self.compile,
        }
        if self.error:
            out["error"] = self.error
        else:
            out["images_per_s"] = round(statistics.median(self.rates), 1)
            out["rounds"] = [round(r, 1) for r in self.rates]
        return out


def settings() -> list[Setting]:
    s = [
        Setting("fp32", bf16=False), Setting("bf16", bf16=True),
        Setting("fp32 contiguous", bf16=False, channels_last=False),
        Setting("bf16 contiguous", bf16=True, channels_last=False),
        Setting("fp32 b64", bf16=False, batch=64), Setting("bf16 b64", bf16=True, batch=64),
        Setting("fp32 1 thread", bf16=False, threads=1), Setting("bf16 1 thread", bf16=True, threads=1),
        Setting("fp32 + paste", bf16=False, paste=True), Setting("bf16 + paste", bf16=True, paste=True),
        Setting("bf16 compiled", bf16=True, compile=True),
        Setting("score fp32 b1", bf16=False, batch=1, scoring=True),
        Setting("score bf16 b1", bf16=True, batch=1, scoring=True),
        Setting("score fp32 b64", bf16=False, batch=64, scoring=True),
        Setting("score bf16 b64", bf16=True, batch=64, scoring=True),
    ]
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per setting per round")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile setting")
    ap.add_argument("--out", type=Path, default=Path("bench/results/cpu_train_throughput.json"))
    args = ap.parse_args(argv)

    paths = sorted((SHARED_DATA / "zhanglab" / "train" / "NORMAL").iterdir())[:128]
    data = load_image_set(paths, args.size, progress=False)
    todo = [s for s in settings() if not (args.no_compile and s.compile)]
    for s in todo:
        s.build(data.images, data.lungs)
    for r in range(args.rounds):
        for s in todo:
            s.run(args.steps)
            print(f"round {r + 1}: {s.name}: {s.rates[-1] if s.rates and not s.error else s.error}", flush=True)
    results = [s.result() for s in todo]
    rate = {r["setting"]: r.get("images_per_s") for r in results}

    def ratio(a: str, b: str) -> float | None:
        return round(rate[a] / rate[b], 2) if rate.get(a) and rate.get(b) else None

    summary = {
        "bf16_over_fp32_network_step": ratio("bf16", "fp32"),
        "bf16_over_fp32_full_step": ratio("bf16 + paste", "fp32 + paste"),
        "bf16_over_fp32_b64": ratio("bf16 b64", "fp32 b64"),
        "channels_last_gain_bf16": ratio("bf16", "bf16 contiguous"),
        "channels_last_gain_fp32": ratio("fp32", "fp32 contiguous"),
        "two_threads_over_one_bf16": ratio("bf16", "bf16 1 thread"),
        "compiled_over_eager_bf16": ratio("bf16 compiled", "bf16"),
        "scoring_bf16_over_fp32_b1": ratio("score bf16 b1", "score fp32 b1"),
        "scoring_bf16_over_fp32_b64": ratio("score bf16 b64", "score fp32 b64"),
    }
    print(summary)
    write_results(args.out, {
        "what": f"ResNet-18 AnatPaste network on CPU at {args.size} px: training images/s (originals + pasted) "
                "and scoring images/s; median of interleaved rounds in one process",
        "command": command_line(argv), "commit": git_commit(), "machine": machine(),
        "cpu_native_bf16": cpu_bf16_supported(), "rounds": args.rounds, "steps_per_round": args.steps,
        "summary": summary, "settings": results,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
