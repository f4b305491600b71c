"""Label backend on llama.cpp (llama-cpp-python): the bundled GGUF run as shipped, 4-bit weights, on the CPU.

On a CPU without native bfloat16 this is several times faster than transformers, which has to run the
dequantized model in float32, and it needs no dequantized copy on disk and a third of the memory.

The part every prompt shares (system prompt and worked example) is evaluated once per worker and its KV
state saved; each topic starts right after it (the topic's own entries are dropped, or the saved state is
restored after another prefix), so a label costs only its own tokens' prefill and the few tokens of the answer.
Decoding is greedy and stops at the first usable label line, as in the transformers backend; the prompt goes
through the model's own chat template (the GGUF's ``tokenizer.chat_template``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worker.labeling.base import Messages, OnProgress, defuse, label_line_done, special_token_pattern

log = logging.getLogger(__name__)

CONTEXT_TOKENS = 4096  # the longest prompt plus answer a label may take (five 100-token documents fit well)


def default_threads() -> int:
    """The cores this process may run on (llama.cpp's own default counts every core of the machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Prefix:
    """The saved KV state after the tokens every label prompt starts with."""

    text: str
    tokens: list[int]
    state: bytes  # llama_state_get_data after evaluating ``tokens``


class LlamaCppLabeler:
    """Greedy labels from a GGUF model, one topic at a time after a restored shared prefix.

    Batching several topics into one decode does not pay on a CPU: prefill is already a batch of a few
    hundred tokens that keeps every core busy (bench/labels.py measures the decode share of a label).
    """

    def __init__(self, llm, *, max_new_tokens: int, name: str, reuse_prefix: bool = True) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        self.max_new_tokens = max_new_tokens
        self.name = name
        self.reuse_prefix = reuse_prefix
        self._llama_cpp = llama_cpp
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeError(f"{name} has no chat template in its GGUF metadata")
        eos = self._piece(llm.token_eos())
        bos = self._piece(llm.token_bos()) if llm.token_bos() >= 0 else ""
        self._chat = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        self._chat_open = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos, add_generation_prompt=False)
        self._specials = special_token_pattern(self._piece(t) for t in self._markup_tokens())
        self._prefixes: dict[str, Prefix] = {}
        self._live: str | None = None  # the prefix the KV cache starts with now

    @classmethod
    def load(cls, gguf: Path, *, threads: int | None, max_new_tokens: int, name: str) -> LlamaCppLabeler:
        from llama_cpp import Llama

        started = time.perf_counter()
        n_threads = threads or default_threads()
        llm = Llama(
            model_path=str(gguf),
            n_ctx=CONTEXT_TOKENS,
            n_batch=512,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_gpu_layers=0,
            verbose=False,
        )
        log.info("LLM %s loaded by llama.cpp in %.1f s (%d threads, %s)", name, time.perf_counter() - started,
                 n_threads, gguf.name)
        return cls(llm, max_new_tokens=max_new_tokens, name=name)

    # -- text and tokens ---------------------------------------------------------------------------------

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def _markup_tokens(self) -> list[int]:
        """Tokens the tokenizer reads as markup (control and user-defined tokens such as <|im_end|>)."""
        markup = self._llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | self._llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        get_attr = self._llama_cpp.llama_vocab_get_attr
        return [t for t in range(self._n_vocab) if get_attr(self._vocab, t) & markup]

    def _encode(self, text: str, special: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to its first ``max_tokens`` tokens of this model (with " ..." where it was cut)."""
        ids = self._encode(text)
        if len(ids) <= max_tokens:
            return text
        return self.llm.detokenize(ids[:max_tokens]).decode("utf-8", errors="ignore").rstrip() + " ..."

    def render(self, conversation: Messages) -> str:
        return self._chat(messages=defuse(conversation, self._specials)).prompt

    # -- generation --------------------------------------------------------------------------------------

    def _prefix_text(self, conversation: Messages, rendered: str) -> str:
        """The part of a rendered prompt every topic shares (all but the last message), "" if none splits off."""
        if len(conversation) < 2:
            return ""
        text = self._chat_open(messages=defuse(conversation[:-1], self._specials)).prompt
        return text if rendered.startswith(text) else ""

    def _prefix(self, conversation: Messages, rendered: str) -> Prefix | None:
        """The saved shared prefix of a rendered prompt, or None if the template does not split cleanly."""
        text = self._prefix_text(conversation, rendered) if self.reuse_prefix else ""
        if not text:
            return None
        if text not in self._prefixes:
            tokens = self._encode(text, special=True)
            self.llm.reset()
            self.llm.eval(tokens)
            self._prefixes[text] = Prefix(text, tokens, self._save_state())
            self._live = text
        return self._prefixes[text]

    def _save_state(self) -> bytes:
        """The context's KV state (the prefix's keys and values), without llama-cpp-python's logits copy."""
        size = self._llama_cpp.llama_state_get_size(self.llm.ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = self._llama_cpp.llama_state_get_data(self.llm.ctx, buffer, size)
        return bytes(buffer[:written])

    def _start_after(self, prefix: Prefix) -> None:
        """Puts the context right after ``prefix``: the next ``eval`` drops every later token's KV entries.

        While the prefix is still the start of the KV cache nothing is copied; after another prefix it is
        restored from its saved state.
        """
        if self._live != prefix.text:
            buffer = (ctypes.c_uint8 * len(prefix.state)).from_buffer_copy(prefix.state)
            if self._llama_cpp.llama_state_set_data(self.llm.ctx, buffer, len(prefix.state)) != len(prefix.state):
                raise RuntimeError("llama.cpp could not restore the shared prefix's state")
            self.llm.input_ids[: len(prefix.tokens)] = prefix.tokens
            self._live = prefix.text
        self.llm.n_tokens = len(prefix.tokens)

    def prompt_tokens(self, conversation: Messages) -> tuple[int, int]:
        """(tokens of the shared prefix, tokens of this conversation's own part) of its prompt."""
        rendered = self.render(conversation)
        shared = self._prefix_text(conversation, rendered)
        return len(self._encode(shared, special=True)), len(self._encode(rendered[len(shared) :], special=True))

    def generate(self, conversations: Sequence[Messages], on_progress: OnProgress | None = None) -> list[str]:
        answers = []
        for done, conversation in enumerate(conversations, start=1):
            answers.append(self._answer(conversation))
            if on_progress is not None:
                on_progress(done)
        return answers

    def next_token_logits(self, conversation: Messages) -> np.ndarray:
        """The logits the answer's first token is chosen from, shape (n_vocab,): what every label starts at."""
        self._prefill(conversation)
        return self._logits().copy()

    def _prefill(self, conversation: Messages) -> None:
        """Evaluates the conversation's prompt: the shared prefix from its saved state, then its own tokens."""
        rendered = self.render(conversation)
        prefix = self._prefix(conversation, rendered)
        if prefix is not None:
            self._start_after(prefix)
            tokens = self._encode(rendered[len(prefix.text) :], special=True)
        else:
            self.llm.reset()
            self._live = None
            tokens = self._encode(rendered, special=True)
        if self.llm.n_tokens + len(tokens) + self.max_new_tokens > self.llm.n_ctx():
            raise ValueError(
                f"a label prompt of {self.llm.n_tokens + len(tokens)} tokens does not fit the LLM's context "
                f"({self.llm.n_ctx()}); lower TOPICQ_LLM_DOC_TOKENS or shorten the prompt"
            )
        self.llm.eval(tokens)

    def _answer(self, conversation: Messages) -> str:
        self._prefill(conversation)
        answer: list[int] = []
        text = ""
        for _ in range(self.max_new_tokens):
            token = int(np.argmax(self._logits()))  # greedy
            if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            answer.append(token)
            text = self.llm.detokenize(answer).decode("utf-8", errors="ignore")
            if label_line_done(text):
                break
            self.llm.eval([token])
        return text

    def _logits(self) -> np.ndarray:
        """The logits after the last evaluated token (a view into llama.cpp's buffer), shape (n_vocab,)."""
        pointer = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,))
