"""Progress reporting shared by the stages."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Progress = Callable[[str, int, int], None]  # (stage, done, total)

# A ticker reports in thousandths of its caller's units, so that a step of one unit (HDBSCAN's half of the
# clustering bar, say) still moves in small ticks instead of standing still until the step ends.
FINE = 1000

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


class Ticker:
    """Moves a stage's progress from ``start`` towards ``end`` (of ``total``) every ``interval`` seconds while a
    step with no callback of its own runs (NN-descent, BERTopic's fit), so that a large job's progress never
    stands still for long. The position follows 1 - exp(-elapsed / expected_s): it keeps moving, slower and
    slower, and never claims the end before the step has finished. It reports in ``FINE`` units (``start *
    FINE`` of ``total * FINE`` and so on), the same fractions at a finer grain.

    ``progress`` and ``check`` run on the ticker's thread; what they raise (a cancelled job) is raised again in
    the caller's thread when the block ends, since the step itself cannot be interrupted."""

    def __init__(self, progress: Progress, stage: str, start: int, end: int, total: int, expected_s: float,
                 interval: float = 5.0, check: Callable[[], None] | None = None) -> None:
        self.progress, self.stage, self.start, self.end, self.total = progress, stage, start, end, total
        self.expected_s, self.interval, self.check = max(expected_s, 1e-3), interval, check
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"topicq-ticker-{stage}")

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.wait(self.interval):
            share = 1.0 - math.exp(-(time.monotonic() - began) / self.expected_s)
            try:
                if self.check is not None:
                    self.check()
                position = self.start * FINE + int((self.end - self.start) * FINE * share * 0.99)
                self.progress(self.stage, position, self.total * FINE)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread in __exit__
                self._error = exc
                return

    def __enter__(self) -> Ticker:
        self.progress(self.stage, self.start * FINE, self.total * FINE)
        self._thread.start()
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error
        if exc_type is None:
            self.progress(self.stage, self.end * FINE, self.total * FINE)


class Steps:
    """Names the steps inside a stage for whoever watches them (bench/scale.py times each and samples its
    memory); this base does nothing. ``with steps.step("search"): ...``"""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        yield


NO_STEPS = Steps()
