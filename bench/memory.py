"""What a benchmark reports beside its timings: peak resident memory and the CPU it ran on."""

from __future__ import annotations

import platform
import threading

import psutil


class PeakRSS:
    """Samples this process's resident memory every 20 ms while in the block; ``gib``: the peak in GiB."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gib(self) -> float:
        return self.peak / 2**30


def cpu_description() -> str:
    """The CPU's model name and whether it has the instructions the backends care about."""
    from worker.devices import cpu_flags

    info = cpu_flags()
    if not info:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"]
    return f"{model}, {psutil.cpu_count()} cores, " + " ".join(f for f in wanted if f in flags)
