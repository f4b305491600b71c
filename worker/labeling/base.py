"""The one interface every label backend implements, and what the backends share."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from shared.prompts import clean_label

Messages = list[dict[str, str]]
OnProgress = Callable[[int], None]  # called with the number of conversations answered so far


class Labeler(Protocol):
    """Turns chat conversations into raw answers, one per conversation, in order.

    Stateless across calls: nothing of one call (no chat history, no user text) reaches the next.
    """

    name: str

    def generate(self, conversations: Sequence[Messages], on_progress: OnProgress | None = None) -> list[str]: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...


def describe(labeler: Labeler) -> dict:
    """What produced a label, stored with it: the backend (its class), the model and its generation settings
    (greedy decoding in every backend, so the same prompt gives the same answer)."""
    settings = {name: getattr(labeler, name) for name in ("max_new_tokens", "batch_size", "reuse_prefix")
                if isinstance(getattr(labeler, name, None), (int, float, str, bool))}
    return {"backend": type(labeler).__name__, "model": str(getattr(labeler, "name", "")),
            "settings": settings | {"decoding": "greedy"}}


def label_line_done(answer: str) -> bool:
    """True once an answer holds a usable label line followed by a newline: generation can stop there.

    Stopping at the first newline alone would cut "Sure, here is a label:\\n\\nQt Framework" before the label.
    """
    return "\n" in answer and clean_label(answer.rsplit("\n", 1)[0]) is not None


def special_token_pattern(tokens: Iterable[str]) -> re.Pattern | None:
    """A pattern matching any of a model's markup tokens (<|im_start|>, </s>, ...), longest first."""
    specials = sorted({t for t in tokens if t}, key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in specials)) if specials else None


def defuse(conversation: Messages, specials: re.Pattern | None) -> Messages:
    """The conversation without the model's special tokens in its text: a document containing
    "<|im_end|>" must not end its turn."""
    if specials is None:
        return conversation
    return [dict(m, content=specials.sub("", m["content"])) for m in conversation]
