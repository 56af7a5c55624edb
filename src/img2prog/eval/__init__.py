"""img2prog.eval: the reference metrics (SPEC §2) and our additions (IoU, pixel-perfect share).

>>> from img2prog.eval import compute_metrics
"""

from img2prog.eval.metrics import (
    Metrics,
    MetricsReport,
    SampleScore,
    compute_metrics,
    metrics_from_masks,
    precision_recall_f1,
    score_batch,
)

__all__ = [
    "Metrics",
    "MetricsReport",
    "SampleScore",
    "compute_metrics",
    "metrics_from_masks",
    "precision_recall_f1",
    "score_batch",
]
