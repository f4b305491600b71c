"""A heartbeat from a side thread: what marks a worker's work alive in the database while it runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls ``beat`` in its own transaction every ``interval`` seconds from a side thread (also through minutes
    of silent UMAP), so that the sweep never takes live work for a dead worker's."""

    def __init__(self, factory: sessionmaker[Session], beat: Callable[[Session], object], interval: float) -> None:
        self.factory, self.beat, self.interval = factory, beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="topicq-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with transaction(self.factory) as session:
                    self.beat(session)
            except Exception as exc:  # the database away for a moment: the next beat tries again
                log.warning("heartbeat failed: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
