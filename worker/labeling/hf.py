"""Label backend on Hugging Face transformers: the bundled GGUF model on CPU, or any causal LM on CUDA,
optionally in the recipe's 4-bit NF4 (bitsandbytes, double quantization, bfloat16 compute)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList

from shared.settings import Settings
from worker.devices import resolve_device, resolve_dtype
from worker.labeling import bundled
from worker.labeling.base import Messages, OnProgress, defuse, label_line_done, special_token_pattern

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadPlan:
    """Where the weights come from and how ``from_pretrained`` is called (pure data, unit-tested)."""

    source: str
    kwargs: dict[str, Any]
    bundled: bundled.BundledModel | None
    device: str
    prepared_dtype: torch.dtype = torch.bfloat16


def quantization_for(settings: Settings, device: str, is_bundled: bool) -> str:
    if settings.llm_quantization != "auto":
        return settings.llm_quantization
    return "nf4" if device == "cuda" and not is_bundled else "none"


def weights_dtype(settings: Settings, device: str, is_bundled: bool) -> str:
    """What this backend would run the weights in: "nf4", or a dtype name such as "bfloat16"."""
    if quantization_for(settings, device, is_bundled) == "nf4":
        return "nf4"
    return str(resolve_dtype(settings.llm_dtype, device)).removeprefix("torch.")


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
    # A bundled GGUF is dequantized once to this precision (bitsandbytes quantizes from bfloat16 weights).
    prepared_dtype = kwargs.get("dtype", torch.bfloat16)
    source = str(bundled.prepared_dir(model, settings.model_dir, prepared_dtype)) if model else settings.llm_model
    return LoadPlan(source=source, kwargs=kwargs, bundled=model, device=device, prepared_dtype=prepared_dtype)


class LabelLineDone(StoppingCriteria):
    """Stops a row once it has written a usable label line and then a newline (``label_line_done``)."""

    def __init__(self, tokenizer, prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        done = [label_line_done(text) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@dataclass
class Prefix:
    """The KV cache of the tokens every label prompt starts with (system prompt and worked example)."""

    text: str
    ids: torch.Tensor  # (1, P)
    cache: DynamicCache


class HFLabeler:
    """Greedy generation in batches of similar prompt length, reusing the shared prefix's KV cache.

    Rows of a batch are laid out as ``[shared prefix][padding][this topic's prompt]``: the prefix comes from
    the cache, the padding is masked out, and position ids follow the mask, so each row computes what it
    would alone. Nothing of one call is kept for the next but the prefix, which holds no user text.
    """

    def __init__(
        self, model, tokenizer, *, max_new_tokens: int, batch_size: int, name: str, reuse_prefix: bool = True
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.name = name
        self.reuse_prefix = reuse_prefix
        self._prefixes: dict[str, Prefix] = {}
        # Every token the tokenizer reads as one piece of markup (<|im_start|>, <|im_end|>, </s>, ...).
        self._specials = special_token_pattern([*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()])
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def load(cls, settings: Settings) -> HFLabeler:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        plan = plan_load(settings)
        if plan.bundled is not None:
            bundled.prepare(plan.bundled, settings.model_dir, plan.prepared_dtype)
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
        return self.tokenizer.apply_chat_template(
            self.defuse(conversation), tokenize=False, add_generation_prompt=True
        )

    def defuse(self, conversation: Messages) -> Messages:
        return defuse(conversation, self._specials)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to its first ``max_tokens`` tokens of this model (with " ..." where it was cut)."""
        ids = self._encode(text)
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(ids[:max_tokens]).rstrip() + " ..."

    def _prefix(self, conversation: Messages, rendered: str) -> Prefix | None:
        """The cached shared prefix of a rendered prompt, or None if the template does not split cleanly."""
        if not self.reuse_prefix or len(conversation) < 2:
            return None
        text = self.tokenizer.apply_chat_template(
            self.defuse(conversation[:-1]), tokenize=False, add_generation_prompt=False
        )
        if not rendered.startswith(text):
            return None
        if text not in self._prefixes:
            ids = torch.tensor([self._encode(text)], device=self.model.device)
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=ids, cache=cache, use_cache=True)
            self._prefixes[text] = Prefix(text, ids, cache)
        return self._prefixes[text]

    @torch.inference_mode()
    def generate(self, conversations: Sequence[Messages], on_progress: OnProgress | None = None) -> list[str]:
        rendered = [self.render(c) for c in conversations]
        prefixes = [self._prefix(c, r) for c, r in zip(conversations, rendered)]
        suffixes = [self._encode(r[len(p.text) :] if p else r) for r, p in zip(rendered, prefixes)]
        # Batches share one prefix and have similar lengths; answers go back in the callers' order.
        order = sorted(range(len(rendered)), key=lambda i: (prefixes[i].text if prefixes[i] else "", len(suffixes[i])))
        answers: list[str] = [""] * len(rendered)
        done = 0
        for group in _groups(order, lambda i: prefixes[i].text if prefixes[i] else None, self.batch_size):
            texts = self._generate_batch(prefixes[group[0]], [suffixes[i] for i in group])
            for i, text in zip(group, texts):
                answers[i] = text
            done += len(group)
            if on_progress is not None:
                on_progress(done)
        return answers

    def _generate_batch(self, prefix: Prefix | None, suffixes: list[list[int]]) -> list[str]:
        width = max(len(s) for s in suffixes)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=self.model.device)
        kwargs = {}
        if prefix is not None:
            rows = len(suffixes)
            ids = torch.cat([prefix.ids.expand(rows, -1), ids], dim=1)
            mask = torch.cat([torch.ones_like(prefix.ids).expand(rows, -1), mask], dim=1)
            cache = copy.deepcopy(prefix.cache)  # generate() extends the cache it is given
            cache.batch_repeat_interleave(rows)
            kwargs["cache"] = cache
        output = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            stopping_criteria=StoppingCriteriaList([LabelLineDone(self.tokenizer, ids.shape[1])]),
            pad_token_id=pad,
            **kwargs,
        )
        return self.tokenizer.batch_decode(output[:, ids.shape[1] :], skip_special_tokens=True)


def _groups(order: list[int], key, size: int):
    """Consecutive runs of ``order`` with the same key, cut into lists of at most ``size``."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == size or key(batch[0]) != key(i)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch
