"""How good a result is against labels: detection metrics of scores, overlap of lung masks with references."""

from anatpaste.evaluate.detection import detection_metrics, specificity_at_sensitivity
from anatpaste.evaluate.overlap import dice, iou

__all__ = ["detection_metrics", "dice", "iou", "specificity_at_sensitivity"]
