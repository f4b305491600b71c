"""The one interface every label backend implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

Messages = list[dict[str, str]]
OnProgress = Callable[[int], None]  # called with the number of conversations answered so far


class Labeler(Protocol):
    """Turns chat conversations into raw answers, one per conversation, in order.

    Stateless across calls: nothing of one call (no chat history, no user text) reaches the next.
    """

    name: str

    def generate(self, conversations: Sequence[Messages], on_progress: OnProgress | None = None) -> list[str]: ...
