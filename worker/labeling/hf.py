"""Label backend on Hugging Face transformers: the bundled GGUF model on CPU, or any causal LM on CUDA,
optionally in the recipe's 4-bit NF4 (bitsandbytes, double quantization, bfloat16 compute)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from shared.settings import Settings
from worker.devices import resolve_device, resolve_dtype
from worker.labeling import bundled
from worker.labeling.base import Messages, OnProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadPlan:
    """Where the weights come from and how ``from_pretrained`` is called (pure data, unit-tested)."""

    source: str
    kwargs: dict[str, Any]
    bundled: bundled.BundledModel | None
    device: str


def quantization_for(settings: Settings, device: str, is_bundled: bool) -> str:
    if settings.llm_quantization != "auto":
        return settings.llm_quantization
    return "nf4" if device == "cuda" and not is_bundled else "none"


def plan_load(settings: Settings) -> LoadPlan:
    device = resolve_device(settings.device)
    model = bundled.lookup(settings.llm_model)
    quantization = quantization_for(settings, device, model is not None)
    kwargs: dict[str, Any] = {}
    if quantization == "nf4":
        if device != "cuda":
            raise RuntimeError("TOPICQ_LLM_QUANTIZATION=nf4 needs a CUDA device (bitsandbytes 4-bit)")
        from transformers import BitsAndBytesConfig

        # Exactly as the recipe loads Llama-2-7b-chat.
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = "auto"
    else:
        kwargs["dtype"] = resolve_dtype(settings.llm_dtype, device)
        if device == "cuda":
            kwargs["device_map"] = "cuda"
    source = str(bundled.prepared_dir(model, settings.model_dir, kwargs.get("dtype"))) if model else settings.llm_model
    return LoadPlan(source=source, kwargs=kwargs, bundled=model, device=device)


class HFLabeler:
    """Greedy, batched generation; each answer is cut at its first newline."""

    def __init__(self, model, tokenizer, *, max_new_tokens: int, batch_size: int, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.name = name
        tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def load(cls, settings: Settings) -> HFLabeler:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        plan = plan_load(settings)
        if plan.bundled is not None:
            bundled.prepare(plan.bundled, settings.model_dir, plan.kwargs.get("dtype", torch.float32))
        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(plan.source)
        model = AutoModelForCausalLM.from_pretrained(plan.source, **plan.kwargs)
        model.eval()
        log.info(
            "LLM %s loaded in %.1f s on %s (%s)",
            settings.llm_model,
            time.perf_counter() - started,
            plan.device,
            "nf4" if "quantization_config" in plan.kwargs else plan.kwargs.get("dtype"),
        )
        return cls(
            model,
            tokenizer,
            max_new_tokens=settings.llm_max_new_tokens,
            batch_size=settings.llm_batch_size,
            name=settings.llm_model,
        )

    def render(self, conversation: Messages) -> str:
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    @torch.inference_mode()
    def generate(self, conversations: Sequence[Messages], on_progress: OnProgress | None = None) -> list[str]:
        prompts = [self.render(c) for c in conversations]
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        # Batches of similar length waste little on padding; answers go back in the callers' order.
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        answers: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = self.tokenizer(
                [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.model.device)
            output = self.model.generate(
                **encoded,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                stop_strings=["\n"],
                tokenizer=self.tokenizer,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for i, text in zip(batch, self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                answers[i] = text
            if on_progress is not None:
                on_progress(min(start + self.batch_size, len(order)))
        return answers
