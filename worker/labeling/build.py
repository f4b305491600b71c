"""Which llama-cpp-python build this virtualenv holds, and whether it runs on this CPU (pure but for the reads).

Standard library only: deploy/llama_wheel.py imports it before the project is installed.

``make install`` compiles llama-cpp-python for the CPU it runs on (deploy/llama_wheel.py) and records the
instruction sets that build may use in ``sys.prefix/topicq-llama-build.json``. A virtualenv copied to, or a
VM migrated onto, a CPU without them would stop with an illegal instruction at the first label; the worker
reads the record instead and leaves llama.cpp out, saying which instruction sets are missing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

RECORD = "topicq-llama-build.json"  # in the virtualenv's prefix; deploy/llama_wheel.py writes it


@dataclass(frozen=True)
class LlamaBuild:
    build: str  # "native", "portable" or "unrecorded" (installed some other way, e.g. pip by hand)
    missing: tuple[str, ...]  # instruction sets the build may use that this CPU lacks

    @property
    def runs_here(self) -> bool:
        return not self.missing


def cpu_flag_set(cpuinfo: str) -> set[str]:
    """The flags of the first processor in ``/proc/cpuinfo`` text (x86 "flags", Arm "Features"); empty if none."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def check_build(record: dict | None, cpuinfo: str) -> LlamaBuild:
    """``record`` (the install's JSON, None if there is none) against this CPU's ``/proc/cpuinfo`` text."""
    if not record:
        return LlamaBuild("unrecorded", ())
    if not cpuinfo:  # not Linux: nothing to compare with
        return LlamaBuild(record.get("build", "unrecorded"), ())
    missing = tuple(sorted(set(record.get("isa", ())) - cpu_flag_set(cpuinfo)))
    return LlamaBuild(record.get("build", "unrecorded"), missing)


def installed_build(cpuinfo: str, prefix: Path = Path(sys.prefix)) -> LlamaBuild:
    try:
        record = json.loads((prefix / RECORD).read_text())
    except (OSError, ValueError):
        record = None
    return check_build(record, cpuinfo)
