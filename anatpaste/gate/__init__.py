"""The input gate: only frontal chest radiographs get a score (rules and rates in docs/input-gate.md).

Three stages, one module each, in the order a film meets them:

* :mod:`anatpaste.gate.dicom_header` — what a DICOM header says (modality, view, body part), checked by the
  reader before the pixels are decoded;
* :mod:`anatpaste.gate.content` — lung fields found at all, the grey scale the right way round, the film upright;
* :mod:`anatpaste.gate.familiarity` — the model's own view: unfamiliar pictures flagged, turned films refused
  (:func:`~anatpaste.gate.familiarity.score_gated` runs the last two around a score).

Nothing is imported here, so the reader can use the header stage without loading the segmentation.
"""
