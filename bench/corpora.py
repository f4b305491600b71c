"""The labelled corpora of ../shared/data, sampled the same way by every benchmark."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _lines(corpus: str) -> list[str]:
    plain = DATA / f"{corpus}.jsonl"
    if plain.exists():
        return plain.read_text().splitlines()
    return gzip.decompress((DATA / f"{corpus}.jsonl.gz").read_bytes()).decode().splitlines()


def sample(corpus: str, n: int) -> tuple[list[str], list[str]]:
    """``n`` documents spread evenly over the whole file (it is sorted by id), with their labels."""
    lines = _lines(corpus)
    picked = [lines[i * len(lines) // n] for i in range(n)] if n < len(lines) else lines
    records = [json.loads(line) for line in picked]
    return [r["text"] for r in records], [r["label"] for r in records]


def corpus_size(corpus: str) -> int:
    return len(_lines(corpus))


def window(corpus: str, n: int, offset: int = 0) -> list[str]:
    """Documents ``offset`` to ``offset + n - 1`` of the corpus in one fixed shuffled order (seed 0), wrapping
    past its end: windows that fit in the corpus side by side are disjoint, and each is spread over the file."""
    lines = _lines(corpus)
    order = np.random.default_rng(0).permutation(len(lines))
    return [json.loads(lines[order[(offset + i) % len(lines)]])["text"] for i in range(n)]
