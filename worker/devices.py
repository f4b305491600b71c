"""Choosing the device and number format for the worker's models."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch


def resolve_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("TOPICQ_DEVICE=cuda but torch sees no CUDA device (is the CUDA build of torch installed?)")
    return setting


# Instruction sets below AVX512-BF16: capping torch's kernels (ATEN_CPU_CAPABILITY) or oneDNN's
# (ONEDNN_MAX_CPU_ISA) to one of them makes bfloat16 slow again, whatever the CPU has.
_CAPS_WITHOUT_BF16 = {
    "ATEN_CPU_CAPABILITY": {"default", "avx2"},
    "ONEDNN_MAX_CPU_ISA": {"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni"},
}


@lru_cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX) and torch may use it; elsewhere
    bf16 is emulated and slow."""
    if any(os.environ.get(name, "").lower() in capped for name, capped in _CAPS_WITHOUT_BF16.items()):
        return False
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


@lru_cache
def cpu_has_amx() -> bool:
    """True where the CPU has AMX bfloat16 tiles (Sapphire Rapids and later) and torch may use them."""
    return cpu_has_fast_bf16() and "amx_bf16" in cpu_flags()


@lru_cache
def cpu_flags() -> str:
    """/proc/cpuinfo as text ("" where there is none): the model name and the instruction-set flags."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    if setting != "auto":
        return getattr(torch, setting)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
