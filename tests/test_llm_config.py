"""The LLM load plan: the bundled CPU model by default, the recipe's 4-bit NF4 Llama-2 on CUDA by one setting."""

import pytest
import torch

from shared.settings import RECIPE_LLM, Settings
from worker.labeling import hf


def test_default_is_the_bundled_model_unquantized_on_cpu(tmp_path):
    plan = hf.plan_load(Settings(model_dir=tmp_path, device="cpu", _env_file=None))
    assert plan.bundled is not None and plan.device == "cpu"
    dtype_name = str(plan.kwargs["dtype"]).removeprefix("torch.")
    assert plan.source == str(tmp_path / f"qwen2.5-coder-1.5b-instruct-{dtype_name}")
    assert "quantization_config" not in plan.kwargs
    assert plan.kwargs["dtype"] in (torch.bfloat16, torch.float32)


def test_recipe_model_on_cuda_loads_in_4bit_nf4_with_double_quant(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    plan = hf.plan_load(Settings(llm_model=RECIPE_LLM, _env_file=None))
    config = plan.kwargs["quantization_config"]
    assert plan.source == RECIPE_LLM and plan.device == "cuda"
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert plan.kwargs["device_map"] == "auto"


def test_unquantized_half_precision_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    plan = hf.plan_load(Settings(llm_model="some/model", llm_quantization="none", llm_dtype="float16", _env_file=None))
    assert plan.kwargs == {"dtype": torch.float16, "device_map": "cuda"}


def test_nf4_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        hf.plan_load(Settings(llm_model=RECIPE_LLM, llm_quantization="nf4", _env_file=None))


def test_unknown_bundled_model_names_the_known_ones():
    with pytest.raises(RuntimeError, match="known: qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct"):
        hf.plan_load(Settings(llm_model="bundled:gpt-9", device="cpu", _env_file=None))


def test_bundled_model_in_4bit_on_cuda_is_quantized_from_its_bfloat16_copy(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    plan = hf.plan_load(Settings(model_dir=tmp_path, llm_quantization="nf4", _env_file=None))
    assert plan.source == str(tmp_path / "qwen2.5-coder-1.5b-instruct-bfloat16")
    assert plan.kwargs["quantization_config"].bnb_4bit_quant_type == "nf4"


# Which label backend a worker runs (pure: the hardware is passed in).
from worker.labeling.choose import LLAMA_CPP, TRANSFORMERS, choose_backend  # noqa: E402


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # AVX2 only, or AVX512-BF16 without AMX
def test_auto_runs_the_bundled_gguf_in_llama_cpp_on_a_cpu_without_amx(dtype):
    choice = choose_backend("auto", gguf=True, device="cpu", amx=False, transformers_dtype=dtype)
    assert (choice.backend, choice.device, choice.dtype) == (LLAMA_CPP, "cpu", "gguf")
    assert "without AMX" in choice.reason and choice.as_dict()["reason"] == choice.reason


def test_auto_runs_transformers_in_bfloat16_where_the_cpu_has_amx():
    choice = choose_backend("auto", gguf=True, device="cpu", amx=True, transformers_dtype="bfloat16")
    assert (choice.backend, choice.device, choice.dtype) == (TRANSFORMERS, "cpu", "bfloat16")


def test_auto_on_cuda_is_transformers_with_the_recipes_nf4():
    choice = choose_backend("auto", gguf=False, device="cuda", amx=False, transformers_dtype="nf4")
    assert (choice.backend, choice.device, choice.dtype) == (TRANSFORMERS, "cuda", "nf4")
    assert choose_backend("auto", gguf=True, device="cuda", amx=False, transformers_dtype="bfloat16").backend \
        == TRANSFORMERS


def test_auto_on_cpu_with_a_hub_model_is_transformers():
    choice = choose_backend("auto", gguf=False, device="cpu", amx=True, transformers_dtype="bfloat16")
    assert choice.backend == TRANSFORMERS and "not a GGUF" in choice.reason


def test_an_explicit_backend_overrides_auto():
    choice = choose_backend("transformers", gguf=True, device="cpu", amx=False, transformers_dtype="float32")
    assert (choice.backend, choice.dtype, choice.reason) == (TRANSFORMERS, "float32", "TOPICQ_LLM_BACKEND=transformers")
    assert choose_backend("llama.cpp", gguf=True, device="cpu", amx=True, transformers_dtype="bfloat16").backend \
        == LLAMA_CPP
    with pytest.raises(ValueError, match="needs a GGUF model"):
        choose_backend("llama.cpp", gguf=False, device="cpu", amx=True, transformers_dtype="bfloat16")


def test_the_worker_resolves_its_backend_from_settings(monkeypatch, tmp_path):
    from worker import models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "cpu_has_amx", lambda: False)
    assert models.label_backend(Settings(model_dir=tmp_path, _env_file=None)).backend == LLAMA_CPP
    monkeypatch.setattr(models, "cpu_has_amx", lambda: True)
    assert models.label_backend(Settings(model_dir=tmp_path, _env_file=None)).backend == TRANSFORMERS
    choice = models.label_backend(Settings(model_dir=tmp_path, llm_backend="transformers", _env_file=None))
    assert choice.backend == TRANSFORMERS and choice.dtype in ("bfloat16", "float32")
    assert models.label_backend(Settings(llm_model="/m/model.gguf", llm_backend="llama.cpp", _env_file=None)).backend \
        == LLAMA_CPP


def test_capping_torch_below_avx512_bf16_turns_native_bfloat16_off(monkeypatch):
    from worker import devices

    for name, value in [("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2")]:
        devices.cpu_has_fast_bf16.cache_clear()
        devices.cpu_has_amx.cache_clear()
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            assert devices.cpu_has_fast_bf16() is False and devices.cpu_has_amx() is False
            assert devices.resolve_dtype("auto", "cpu") == torch.float32
            devices.cpu_has_amx.cache_clear()
    devices.cpu_has_fast_bf16.cache_clear()
