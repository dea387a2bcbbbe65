"""Site adaptation: refit a model's statistics on a hospital's own normals (``calibrate``) and, when a
label-free check says it pays, fine-tune its encoder on them first (``adapt``)."""

from anatpaste.adapt.adapt import DEFAULT_LADDER, RECIPES, AdaptResult, adapt, ladder
from anatpaste.adapt.calibrate import MIN_NORMALS, CalibrationError, calibrate, crossfit_threshold
from anatpaste.adapt.finetune import FinetuneRecipe, finetune

__all__ = [
    "DEFAULT_LADDER",
    "MIN_NORMALS",
    "RECIPES",
    "AdaptResult",
    "CalibrationError",
    "FinetuneRecipe",
    "adapt",
    "calibrate",
    "crossfit_threshold",
    "finetune",
    "ladder",
]
