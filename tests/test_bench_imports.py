"""Every benchmark module imports: a bench that broke when code moved (bench.quality once imported a module that
no longer existed, which also broke bench.embed) is found by the suite, not by the next person who runs it."""

import importlib
from pathlib import Path

import pytest

BENCHES = sorted(p.stem for p in (Path(__file__).parent.parent / "bench").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", BENCHES)
def test_the_benchmark_module_imports(name):
    module = importlib.import_module(f"bench.{name}")
    assert module.__name__ == f"bench.{name}"
