"""The app's settings: ``--conf key value`` pairs and ``POST /train/anatpaste`` bodies, typed and checked.

``--conf`` keys (all optional):

=================  ==========================================================================================
model_path         model file that seeds an empty store (default: the shipped ``anatpaste/weights/default.pt``)
model_dir          the version store (default: ``<app>/model/anatpaste``)
base_normals       folder of normal radiographs the trainer always adds to the confirmed normals
replay_normals     folder of the model's own training normals, mixed into ``adapt`` fine-tuning batches
device             ``cpu`` / ``cuda`` for infer and scoring (default: cpu)
dicomweb_modalities  modalities a DICOMweb datastore lists (default ``CR,DX``)
dicomweb_cache     the DICOMweb datastore's local folder (default: ``<app>/model/dicomweb-cache/<url hash>``)
infer_threads      CPU threads of the server's torch (default: half the cores; with 2 threads on 2 busy
                   cores, e.g. while training runs, torch's thread barriers made a 2k infer 5-10x slower)
train_*            defaults of the training request fields below, e.g. ``--conf train_steps 300``
=================  ==========================================================================================

Training request fields (``POST /train/anatpaste`` JSON body, or ``train_<field>`` in ``--conf``):
``mode`` (``calibrate``: refit the Gaussians and threshold on the site's normals, seconds; ``adapt``, the default:
calibrate, fine-tune with each recipe of a small ladder and keep the best fine-tune only if a label-free check
says it beats the calibrated model, see :mod:`anatpaste.adapt`; ``finetune``: the AnatPaste training loop from
the published model; ``scratch``: the same from a random initialisation), ``adapt_recipes`` (comma-separated
names among ``anatpaste.adapt.RECIPES``, default ``gentle,strong``), ``adapt_steps`` (steps of each recipe),
``steps``, ``batch_size``, ``image_size`` (0 = the current model's), ``lr``, ``seed``, ``eval_every``,
``init`` (``current`` = fine-tune the published model, ``scratch``;
``mode: scratch`` implies it), ``device`` (default: cuda when there is
one), ``threads`` (CPU threads, 0 = all cores but one), ``processes`` (data-parallel training processes,
0 = one per visible GPU when the device is ``cuda``), ``gate_tolerance``, ``gate_min_auc`` (sanity gate,
see :mod:`.gate`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from anatpaste.adapt.adapt import DEFAULT_LADDER, RECIPES
from anatpaste.train.config import TrainConfig

MODES = ("calibrate", "adapt", "finetune", "scratch")


class ConfigError(ValueError):
    """A ``--conf`` value or training request field that has the wrong type or range."""


def _typed(name: str, value: Any, kind: type) -> Any:
    try:
        if kind is bool and isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {kind.__name__}, got {value!r}") from None


@dataclass(frozen=True)
class TrainOptions:
    """One training run's settings (defaults suit a fine-tune on a 2-core CPU in minutes)."""

    mode: str = "adapt"
    adapt_recipes: str = ",".join(DEFAULT_LADDER)
    adapt_steps: int = 300
    steps: int = 200
    batch_size: int = 16
    image_size: int = 0
    lr: float = 0.01
    seed: int = 0
    eval_every: int = 50
    init: str = "current"
    device: str = ""
    threads: int = 0
    processes: int = 0
    gate_tolerance: float = 0.02
    gate_min_auc: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 1 <= self.adapt_steps <= 1_000_000:
            raise ConfigError(f"adapt_steps must be in [1, 1000000], got {self.adapt_steps}")
        names = self.recipe_names
        if not names or any(n not in RECIPES for n in names):
            raise ConfigError(f"adapt_recipes must be comma-separated names among {', '.join(RECIPES)}, "
                              f"got {self.adapt_recipes!r}")
        try:  # the core's ranges (anatpaste.train.config), so a request the trainer would reject fails here
            TrainConfig(image_size=self.image_size or 128, steps=self.steps, batch_size=self.batch_size,
                        lr=self.lr, seed=self.seed, eval_every=self.eval_every)
        except ValueError as err:
            msg = str(err)
            if msg.startswith("image_size"):
                msg = f"image_size must be 0 (the current model's) or in [64, 1024], got {self.image_size}"
            raise ConfigError(msg) from None
        if self.eval_every < 1:  # the gate compares label-free figures: the server always evaluates
            raise ConfigError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.init not in ("current", "scratch"):
            raise ConfigError(f"init must be 'current' or 'scratch', got {self.init!r}")
        if self.device not in ("", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        if not 0 <= self.processes <= 64:
            raise ConfigError(f"processes must be in [0, 64] (0 = one per visible GPU), got {self.processes}")
        if not 0 <= self.gate_tolerance <= 1 or not 0 <= self.gate_min_auc <= 1:
            raise ConfigError(
                f"gate_tolerance and gate_min_auc must be in [0, 1], got {self.gate_tolerance}, {self.gate_min_auc}"
            )

    @classmethod
    def from_values(cls, values: dict[str, Any], base: TrainOptions | None = None) -> TrainOptions:
        """``base`` (or the defaults) updated with the known keys of ``values``; other keys are ignored
        (MONAI Label adds its own: model, local_rank, gpus, ...)."""
        base = base or cls()
        changes = {}
        for f in fields(cls):
            if f.name in values and values[f.name] is not None:
                kind = type(getattr(base, f.name))
                changes[f.name] = _typed(f.name, values[f.name], kind)
        return dataclasses.replace(base, **changes)

    @property
    def recipe_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.adapt_recipes.split(",") if n.strip())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AppConfig:
    """Typed ``--conf`` of the app."""

    model_dir: Path
    model_path: Path | None
    base_normals: Path | None
    replay_normals: Path | None
    device: str
    infer_threads: int
    dicomweb_modalities: tuple[str, ...]
    dicomweb_cache: Path | None
    train: TrainOptions

    @classmethod
    def from_conf(cls, conf: dict[str, str], app_dir: str | os.PathLike) -> AppConfig:
        model_dir = Path(conf.get("model_dir") or Path(app_dir) / "model" / "anatpaste")
        base = conf.get("base_normals")
        if base and not Path(base).is_dir():
            raise ConfigError(f"base_normals {base!r} is not a folder")
        replay = conf.get("replay_normals")
        if replay and not Path(replay).is_dir():
            raise ConfigError(f"replay_normals {replay!r} is not a folder")
        train_values = {k[len("train_") :]: v for k, v in conf.items() if k.startswith("train_")}
        for k in ("gate_tolerance", "gate_min_auc"):
            if k in conf:
                train_values[k] = conf[k]
        threads = _typed("infer_threads", conf.get("infer_threads", max(1, (os.cpu_count() or 2) // 2)), int)
        if threads < 1:
            raise ConfigError(f"infer_threads must be >= 1, got {threads}")
        modalities = tuple(m.strip().upper() for m in conf.get("dicomweb_modalities", "CR,DX").split(",") if m.strip())
        if not modalities:
            raise ConfigError("dicomweb_modalities must name at least one modality, e.g. CR,DX")
        device = conf.get("device", "cpu")
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
        return cls(
            model_dir=model_dir.resolve(),
            model_path=Path(conf["model_path"]).resolve() if conf.get("model_path") else None,
            base_normals=Path(base).resolve() if base else None,
            replay_normals=Path(replay).resolve() if replay else None,
            device=device,
            infer_threads=threads,
            dicomweb_modalities=modalities,
            dicomweb_cache=Path(conf["dicomweb_cache"]).resolve() if conf.get("dicomweb_cache") else None,
            train=TrainOptions.from_values(train_values),
        )
