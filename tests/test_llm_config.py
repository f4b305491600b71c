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
