"""Build llama-cpp-python once per kind of CPU and install it: ``python deploy/llama_wheel.py install|key``.

PyPI ships llama-cpp-python only as source, so it is compiled on the machine. A build for this CPU
(``-march=native``: AVX-512 and VNNI where the CPU has them, AMX's kernels excepted: ``NO_AMX``) prefills about
1.3x faster than the portable AVX2 build on an AVX-512 CPU (``python -m bench.llama_build``). Such a build
stops with an illegal instruction on a CPU that lacks what it was built for, so each build is kept in a
wheelhouse of its own, named after the instruction sets it may use, under
``${XDG_CACHE_HOME:-~/.cache}/topicq/wheels``: a clone or a CI run on the same machine installs it in seconds,
and another CPU builds its own. What was installed is recorded in the
virtualenv (``topicq-llama-build.json``); the worker reads it and does not start llama.cpp on a CPU without
those instruction sets (``worker/labeling/build.py``).

``--build portable`` compiles requirements/llama-cmake-args.txt as it is (AVX2, runs on any x86-64 CPU since
2013): for a virtualenv or an image that moves between machines (the Dockerfile builds that one).

Standard library only (and worker/labeling/build.py, which is too): it runs before the project is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from worker.labeling.build import RECORD, cpu_flag_set  # noqa: E402  (the record the worker reads)

CMAKE_ARGS = ROOT / "requirements" / "llama-cmake-args.txt"
CONSTRAINTS = ROOT / "constraints.txt"

# /proc/cpuinfo flags that name instruction sets a compiler may emit (the rest: hypervisor, power, bugs ...).
ISA = re.compile(r"^(sse\w*|ssse3|avx\w*|amx\w*|fma\w*|f16c|bmi\w*|adx|abm|lzcnt|popcnt|movbe|aes|vaes|pclmulqdq|"
                 r"vpclmulqdq|gfni|sha_ni|rdrand|rdseed|xsave\w*|cx16|lahf_lm|sse4a|xop|tbm|"
                 r"asimd\w*|sve\w*|fp16|dotprod|i8mm|bf16)$")
_PORTABLE_ISA = re.compile(r"^-DGGML_(NATIVE|AVX|AVX2|AVX512\w*|FMA|F16C|BMI2)=\w+$")


def cpu_isa(cpuinfo: str) -> list[str]:
    """The instruction-set flags of the first processor in ``cpuinfo`` (x86 "flags" or Arm "Features")."""
    return sorted(flag for flag in cpu_flag_set(cpuinfo) if ISA.match(flag))


def this_cpu_isa() -> list[str]:
    try:
        return cpu_isa(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux: the machine's name stands in
        return [platform.machine().lower()]


# ggml's AMX kernels, which -march=native compiles in on a CPU with AMX, crash llama.cpp at its first evaluation
# of the bundled Q4_K/Q6_K GGUF (SIGSEGV in the AMX matrix multiply after the weights are repacked for it; seen
# here on a KVM Xeon with amx_int8, reported upstream as ggml-org/llama.cpp#20824 for Q4_K_M models). A native
# build leaves them out; its AVX-512 and VNNI kernels stay.
NO_AMX = ("-DCMAKE_C_FLAGS=-mno-amx-int8", "-DCMAKE_CXX_FLAGS=-mno-amx-int8")


def cmake_args(build: str, portable_args: str) -> str:
    """CMAKE_ARGS for ``build``: the portable file as it is, or with its instruction sets left to the compiler
    (AMX's kernels excepted: ``NO_AMX``)."""
    if build == "portable":
        return portable_args.strip()
    kept = [arg for arg in portable_args.split() if not _PORTABLE_ISA.match(arg)]
    return " ".join(["-DGGML_NATIVE=ON", *NO_AMX, *kept])


def build_key(build: str, args: str, isa: list[str]) -> str:
    """What a wheel is named after: its cmake arguments, the machine and (native builds) the instruction sets."""
    parts = [build, platform.machine(), args, *(isa if build == "native" else [])]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def pinned_version(constraints: str) -> str:
    match = re.search(r"^llama[-_.]cpp[-_.]python==(\S+)", constraints, re.M | re.I)
    if not match:
        raise SystemExit("constraints.txt pins no llama-cpp-python")
    return match.group(1)


def wheelhouse(version: str, build: str, key: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "topicq" / "wheels" / f"llama-cpp-python-{version}-{build}-{key}"


def ensure_wheel(version: str, build: str, args: str, key: str) -> Path:
    """The wheel for this build, compiled into its wheelhouse first if it is not there yet."""
    house = wheelhouse(version, build, key)
    wheels = sorted(house.glob("llama_cpp_python-*.whl"))
    if wheels:
        return wheels[-1]
    print(f"Compiling llama-cpp-python {version} ({build} build) once into {house}: 4 to 11 minutes on 2 cores",
          flush=True)
    staging = house.with_name(house.name + f".partial.{os.getpid()}")
    env = {**os.environ, "CMAKE_ARGS": args}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "-w", str(staging),
                    f"llama-cpp-python=={version}"], env=env, check=True)
    try:
        staging.replace(house)
    except OSError:  # another install finished first
        shutil.rmtree(staging)
    return sorted(house.glob("llama_cpp_python-*.whl"))[-1]


def install(build: str) -> None:
    version = pinned_version(CONSTRAINTS.read_text())
    args = cmake_args(build, CMAKE_ARGS.read_text())
    isa = this_cpu_isa()
    key = build_key(build, args, isa)
    wheel = ensure_wheel(version, build, args, key)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True)
    record = {"build": build, "version": version, "cmake_args": args, "key": key,
              "isa": isa if build == "native" else []}
    (Path(sys.prefix) / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    print(f"llama-cpp-python {version}: the {build} build ({wheel.parent.name})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install", "key"])
    parser.add_argument("--build", choices=["native", "portable"], default="native")
    options = parser.parse_args(argv)
    if options.command == "key":  # the Makefile's stamp: another CPU installs again
        print(build_key(options.build, cmake_args(options.build, CMAKE_ARGS.read_text()), this_cpu_isa()))
    else:
        install(options.build)


if __name__ == "__main__":
    main()
