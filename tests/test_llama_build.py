"""llama-cpp-python is compiled for the CPU it runs on (deploy/llama_wheel.py), and the worker never starts a
build on a CPU that lacks what it was compiled for (worker/labeling/build.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.llama_build import wheel_tool
from worker.devices import cpu_flags
from worker.labeling.build import LlamaBuild, check_build, installed_build
from worker.labeling.choose import LLAMA_CPP, TRANSFORMERS, choose_backend

ROOT = Path(__file__).resolve().parent.parent
llama_wheel = wheel_tool()

CPUINFO = """processor\t: 0
model name\t: Some CPU
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2 avx512f avx512_vnni hypervisor rep_good
bugs\t\t: spectre_v1
processor\t: 1
flags\t\t: fpu sse
"""
PORTABLE = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
            "-DLLAVA_BUILD=OFF")


def test_the_key_names_the_first_processors_instruction_sets_only():
    assert llama_wheel.cpu_isa(CPUINFO) == ["avx", "avx2", "avx512_vnni", "avx512f", "bmi2", "f16c", "fma", "sse",
                                            "sse2", "sse4_1", "sse4_2", "ssse3"]
    assert llama_wheel.cpu_isa("no flags here") == []


def test_a_native_build_leaves_the_instruction_sets_to_the_compiler_and_keeps_the_rest():
    no_amx = "-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8"
    assert llama_wheel.cmake_args("native", PORTABLE) == f"-DGGML_NATIVE=ON {no_amx} -DLLAVA_BUILD=OFF"
    assert llama_wheel.cmake_args("portable", PORTABLE + "\n") == PORTABLE
    assert llama_wheel.cmake_args("native", (ROOT / "requirements" / "llama-cmake-args.txt").read_text()) \
        .startswith(f"-DGGML_NATIVE=ON {no_amx} -DLLAVA_BUILD=OFF")


def test_another_cpu_gets_another_native_wheelhouse_but_the_same_portable_one():
    args = llama_wheel.cmake_args("native", PORTABLE)
    assert llama_wheel.build_key("native", args, ["avx2"]) != llama_wheel.build_key("native", args, ["avx2", "avx512f"])
    assert llama_wheel.build_key("portable", PORTABLE, ["avx2"]) == llama_wheel.build_key("portable", PORTABLE,
                                                                                          ["avx512f"])
    assert llama_wheel.pinned_version("x==1\nllama_cpp_python==0.3.36\n") == "0.3.36"


def test_this_virtualenv_holds_the_build_make_install_recorded_for_this_cpu():
    """`make install` ran deploy/llama_wheel.py: its record is in the venv, its key is the Makefile's stamp's."""
    record = json.loads((Path(sys.prefix) / "topicq-llama-build.json").read_text())
    build = installed_build(cpu_flags())
    assert build.build == record["build"] and build.runs_here
    key = subprocess.run([sys.executable, str(ROOT / "deploy" / "llama_wheel.py"), "key", "--build", record["build"]],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert key == record["key"]
    assert (Path(sys.prefix) / f".installed-{record['build']}-{key}").exists()
    import llama_cpp

    assert llama_cpp.__version__ == record["version"]


def test_the_installed_llama_cpp_has_no_amx_kernels():
    """ggml's AMX matrix multiply crashed llama.cpp (SIGSEGV) at the first evaluation of the bundled GGUF on a
    CPU with amx_int8; a native build must leave it out there (deploy/llama_wheel.py's NO_AMX)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    assert "CPU :" in info  # the line read is the one that names the instruction sets the build uses
    assert "AMX_INT8 = 1" not in info


def test_a_build_for_another_cpu_names_what_this_one_lacks():
    record = {"build": "native", "isa": ["avx2", "avx512f", "avx512_vnni"]}
    assert check_build(record, "flags : sse avx2 avx512f avx512_vnni\n") == LlamaBuild("native", ())
    assert check_build(record, "flags : sse avx2\n") == LlamaBuild("native", ("avx512_vnni", "avx512f"))
    assert check_build({"build": "portable", "isa": []}, "flags : sse\n").runs_here
    assert check_build(None, CPUINFO) == LlamaBuild("unrecorded", ())
    assert check_build(record, "").runs_here  # no /proc/cpuinfo to compare with


def test_auto_leaves_a_build_for_another_cpu_out_and_an_explicit_setting_refuses_it():
    elsewhere = LlamaBuild("native", ("avx512f",))
    choice = choose_backend("auto", gguf=True, device="cpu", amx=False, transformers_dtype="float32", build=elsewhere)
    assert choice.backend == TRANSFORMERS and "lacks avx512f" in choice.reason and "make install" in choice.reason
    with pytest.raises(ValueError, match="compiled for another CPU"):
        choose_backend("llama.cpp", gguf=True, device="cpu", amx=False, transformers_dtype="float32", build=elsewhere)
    here = choose_backend("auto", gguf=True, device="cpu", amx=False, transformers_dtype="float32",
                          build=LlamaBuild("native", ()))
    assert here.backend == LLAMA_CPP and "native build" in here.reason
