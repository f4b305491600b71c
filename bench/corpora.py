"""The labelled corpora of ../shared/data, sampled the same way by every benchmark."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def sample(corpus: str, n: int) -> tuple[list[str], list[str]]:
    """``n`` documents spread evenly over the whole file (it is sorted by id), with their labels."""
    lines = (DATA / f"{corpus}.jsonl").read_text().splitlines()
    picked = [lines[i * len(lines) // n] for i in range(n)] if n < len(lines) else lines
    records = [json.loads(line) for line in picked]
    return [r["text"] for r in records], [r["label"] for r in records]
