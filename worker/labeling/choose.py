"""Which label backend a worker runs, decided from the setting, the model and the hardware (pure).

``auto`` follows what bench/labels.py measured (figures in bench/README.md):
- a CUDA device: transformers (a hub model in the recipe's 4-bit NF4, a bundled one dequantized once);
- a CPU and a GGUF model (the bundled ones): llama.cpp, which runs the 4-bit file as shipped. Without native
  bfloat16 transformers could only run the dequantized model in float32, several times slower; with
  AVX512-BF16 but no AMX, transformers' bfloat16 measured slower than llama.cpp on a Xeon, and on an AMD EPYC
  10-20% faster a label than llama.cpp's native build (bench.labels' (e) row: 2.73-3.04 s against 3.26-3.50 s,
  two corpora, fresh worker processes) but at 4.1 GiB against 2.5 GiB for a worker, a 3.5 GB dequantized copy
  and 66 s of one-time preparation: too little speed for the memory and the first start, so llama.cpp stays;
- a CPU with AMX (bfloat16 matrix tiles): transformers in bfloat16, whose prefill (most of a label's cost)
  those units speed up: on a 2-core AMX Xeon 2.29 s a label against 5.50 s for llama.cpp's native build
  (AVX-512 and VNNI; its AMX kernels crash on the bundled GGUF, so the build leaves them out);
- a hub id or folder (no GGUF): transformers, the only backend that loads it;
- a llama.cpp build compiled for another CPU (``build.missing``): transformers, since llama.cpp would stop
  with an illegal instruction; ``make install`` builds one for this CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from worker.labeling.build import LlamaBuild

LLAMA_CPP = "llama.cpp"
TRANSFORMERS = "transformers"


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # LLAMA_CPP or TRANSFORMERS
    device: str  # "cpu" or "cuda"
    dtype: str  # what the weights run in: "gguf", "bfloat16", "float32", "nf4", ...
    reason: str  # one sentence for the log and /healthz

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


UNRECORDED = LlamaBuild("unrecorded", ())


def choose_backend(
    setting: str, *, gguf: bool, device: str, amx: bool, transformers_dtype: str, build: LlamaBuild = UNRECORDED
) -> BackendChoice:
    """The backend for ``setting`` ("auto", "llama.cpp" or "transformers").

    ``gguf``: the model is a GGUF file (a bundled model); ``device``: the resolved device; ``amx``: the CPU has
    AMX bfloat16 tiles that torch may use; ``transformers_dtype``: what transformers would run the weights in;
    ``build``: the installed llama-cpp-python build, and what it needs that this CPU lacks.
    """
    wrong_cpu = (f"the installed llama-cpp-python was compiled for another CPU (this one lacks "
                 f"{', '.join(build.missing)}); `make install` builds one for this CPU")
    if setting == LLAMA_CPP:
        if not gguf:
            raise ValueError("TOPICQ_LLM_BACKEND=llama.cpp needs a GGUF model (a bundled: one)")
        if not build.runs_here:
            raise ValueError(f"TOPICQ_LLM_BACKEND=llama.cpp, but {wrong_cpu}")
        return BackendChoice(LLAMA_CPP, "cpu", "gguf", f"TOPICQ_LLM_BACKEND=llama.cpp ({build.build} build)")
    if setting == TRANSFORMERS:
        return BackendChoice(TRANSFORMERS, device, transformers_dtype, "TOPICQ_LLM_BACKEND=transformers")
    if device == "cuda":
        return BackendChoice(TRANSFORMERS, device, transformers_dtype, "a CUDA device: transformers runs on the GPU")
    if not gguf:
        return BackendChoice(
            TRANSFORMERS, device, transformers_dtype, "the model is not a GGUF file, so only transformers loads it"
        )
    if amx:
        why = "the CPU has AMX: transformers' bfloat16 prefill runs on its tiles"
        return BackendChoice(TRANSFORMERS, device, transformers_dtype, why)
    if not build.runs_here:
        return BackendChoice(TRANSFORMERS, device, transformers_dtype, wrong_cpu)
    return BackendChoice(
        LLAMA_CPP, "cpu", "gguf",
        "a CPU without AMX: llama.cpp runs the 4-bit GGUF as shipped, faster than transformers in float32 or "
        f"AVX512-BF16 ({build.build} build)",
    )
