"""Progress reporting shared by the stages."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]  # (stage, done, total)

# Share of a job's wall time each stage takes on a CPU (measured on 2,000 news articles); the job's
# overall progress moves through these bands.
STAGE_WEIGHTS = {
    "embedding": 0.55,
    "reducing": 0.15,
    "clustering": 0.02,
    "representing": 0.06,
    "labelling": 0.20,
    "saving": 0.02,
}


def overall(stage: str, done: int, total: int) -> float:
    """Overall progress 0..1 of a job that is ``done/total`` through ``stage``."""
    before = 0.0
    for name, weight in STAGE_WEIGHTS.items():
        if name == stage:
            fraction = done / total if total else 1.0
            return min(1.0, before + weight * fraction)
        before += weight
    return 0.0


def no_progress(stage: str, done: int, total: int) -> None:
    return None
