"""The embedding model on torch or on ONNX Runtime, behind one SentenceTransformer.

ONNX: the model's transformer (token ids, attention mask -> token embeddings, shape (batch, seq, dim), float32)
is exported once into the model cache (torch.onnx.export with eager attention, so ONNX Runtime's BERT optimizer
fuses it into Attention, SkipLayerNormalization and BiasGelu nodes) and, for ``int8``, quantized dynamically:
int8 weights per output channel, uint8 activations per batch, MatMul and Attention nodes only. The
SentenceTransformer keeps its own tokenizer, pooling and normalization and only its transformer is swapped for
the ONNX session, so ``.encode``, ``.tokenizer``, ``.max_seq_length`` and ``.get_embedding_dimension()`` (all that
worker/pipeline/embed.py and BERTopic's KeyBERTInspired use) behave as before. bench/embed.py measured the
choices in ``choose_embedding_backend``.

On a CPU without VNNI, ONNX Runtime's u8s8 kernels (VPMADDUBSW) can saturate; there the int8 weights use 7 bits
(``reduce_range``, ONNX Runtime's advice), which VNNI CPUs compute exactly too, so the file's accuracy can be
checked anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

SETTINGS = ("auto", "torch", "onnx", "onnx-int8")
FORMAT = 1  # bump when the export or quantization recipe changes: a new cache folder


def choose_embedding_backend(setting: str, device: str, fast_bf16: bool, int8: bool = True) -> tuple[str, str, str]:
    """(backend, dtype or variant, reason) for ``TOPICQ_EMBEDDING_BACKEND``.

    backend "torch" comes with a torch dtype name or "auto" (``resolve_dtype`` decides); backend "onnx" with
    the variant "float32" or "int8". ONNX Runtime runs here on the CPU only, so CUDA always uses torch.
    ``int8``: whether the model keeps its vectors under int8 weights (MiniLM: mean cosine 0.99 to float32; not
    MPNet, 0.90): where not, ``auto`` takes torch bfloat16 on a CPU with it, else ONNX float32.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown embedding backend {setting!r} (known: {', '.join(SETTINGS)})")
    if device == "cuda":
        reason = "CUDA: torch (onnxruntime runs on the CPU here)"
        return "torch", "auto", reason if setting != "torch" else "asked for torch"
    if setting == "torch":
        return "torch", "auto", "asked for torch"
    if setting == "onnx":
        return "onnx", "float32", "asked for ONNX float32"
    if setting == "onnx-int8":
        return "onnx", "int8", "asked for ONNX int8"
    if not int8:
        if fast_bf16:
            return "torch", "auto", "int8 loses this model's vectors (cosine 0.90); the CPU has fast bfloat16"
        return "onnx", "float32", "int8 loses this model's vectors (cosine 0.90); ONNX float32 is faster than torch"
    if fast_bf16:
        return "onnx", "int8", "CPU with AVX512-BF16: ONNX int8 measured faster than torch bfloat16"
    return "onnx", "int8", "CPU without fast bfloat16: ONNX int8 measured fastest at cosine >= 0.99 to float32"


@lru_cache
def cpu_has_vnni() -> bool:
    """True where the CPU has VNNI (AVX512-VNNI, AVX-VNNI or AMX-INT8): int8 dot products without saturation."""
    from worker.devices import cpu_flags

    return any(flag in cpu_flags() for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def onnx_file_name(variant: str, vnni: bool) -> str:
    """The cache file of a variant: ``float32.onnx``, ``int8.onnx`` (8-bit weights) or ``int8-7bit.onnx``."""
    if variant == "float32":
        return "float32.onnx"
    if variant == "int8":
        return "int8.onnx" if vnni else "int8-7bit.onnx"
    raise ValueError(f"unknown ONNX variant {variant!r}")


def weights_key(model) -> str:
    """A digest of a torch model's weights and of the tool versions that shape the exported file."""
    import onnxruntime

    digest = hashlib.sha256(f"{FORMAT} {torch.__version__} {onnxruntime.__version__}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _export(model, path: Path) -> None:
    """The transformer to ONNX: inputs (batch, seq) int64, output "last_hidden_state" (batch, seq, dim)."""
    # MPNet's config has no token types at all (and its forward no token_type_ids argument).
    token_types = getattr(model.config, "type_vocab_size", 0)
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])

    class Transformer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(inputs, args))).last_hidden_state

    example = {name: torch.ones((2, 8), dtype=torch.int64) for name in inputs}
    example["attention_mask"][1, 5:] = 0
    if "token_type_ids" in example:
        example["token_type_ids"].zero_()
    previous = model.config._attn_implementation
    if previous != "eager":  # MPNet has only its own attention, and says so when asked to switch
        model.set_attn_implementation("eager")  # the pattern ONNX Runtime's optimizer fuses; sdpa's is not
    try:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated and its tracer talks a lot
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Transformer().eval(), tuple(example.values()), str(path), dynamo=False, opset_version=17,
                input_names=inputs, output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*inputs, "last_hidden_state"]},
            )
    finally:
        if previous != "eager":
            model.set_attn_implementation(previous)


def _optimize(source: Path, target: Path, config) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=1, use_gpu=False)
    optimized.save_model_to_file(str(target))


def _quantize(source: Path, target: Path, reduce_range: bool) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=reduce_range, op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})  # the fused nodes' outputs


def prepare_onnx(model, folder: Path, variant: str, vnni: bool | None = None) -> Path:
    """The variant's ONNX file in ``folder``, exported (and quantized) on the first call only.

    Each file is written under a temporary name in ``folder`` and renamed into place, so a concurrent worker
    sees either no file or a whole one.
    """
    vnni = cpu_has_vnni() if vnni is None else vnni
    target = folder / onnx_file_name(variant, vnni)
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder, prefix=".partial-") as scratch:
        float32 = folder / onnx_file_name("float32", vnni)
        if not float32.exists():
            _export(model, Path(scratch) / "export.onnx")
            _optimize(Path(scratch) / "export.onnx", Path(scratch) / float32.name, model.config)
            os.replace(Path(scratch) / float32.name, float32)
        if variant != "float32":
            _quantize(float32, Path(scratch) / target.name, reduce_range=not vnni)
            os.replace(Path(scratch) / target.name, target)
    log.info("prepared %s in %.1f s", target, time.perf_counter() - started)
    return target


class OnnxTransformer(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' Transformer module.

    A batch runs in slices of ``rows_per_run`` rows, each cut to its own longest row: sentence-transformers pads
    a whole batch to its longest text, and with the worker's batches of 64 (sorted by length) slices of 16 ran
    about 1.4x faster, the padded positions' outputs being zeros that mean pooling ignores anyway. Threads do not
    spin while waiting, which helped where other processes share the cores.
    """

    def __init__(self, path: Path, config, threads: int, rows_per_run: int = 16) -> None:
        import onnxruntime

        super().__init__()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.rows_per_run = rows_per_run
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.config = config
        self.path = path

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_ignored):
        """Token embeddings, shape (batch, seq, dim) float32, as ``last_hidden_state``."""
        from transformers.modeling_outputs import BaseModelOutput

        feed = {"input_ids": input_ids, "attention_mask": attention_mask,
                "token_type_ids": token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)}
        arrays = {name: feed[name].cpu().numpy() for name in self.inputs}
        mask = arrays["attention_mask"].astype(bool)
        hidden = np.zeros((*input_ids.shape, self.config.hidden_size), dtype=np.float32)
        for start in range(0, len(input_ids), self.rows_per_run):
            rows = slice(start, start + self.rows_per_run)
            width = int(np.flatnonzero(mask[rows].any(axis=0)).max(initial=0)) + 1  # right padding only
            (hidden[rows, :width],) = self.session.run(None, {k: v[rows, :width] for k, v in arrays.items()})
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))


def load_onnx_embedder(source: str, model_dir: Path, variant: str = "int8", threads: int | None = None,
                       vnni: bool | None = None):
    """A SentenceTransformer of ``source`` whose transformer runs in ONNX Runtime (CPU).

    The ONNX file lives in ``model_dir/embedding-onnx-<digest of the weights>/``, prepared on first use;
    ``vnni`` (default: this CPU's) picks the int8 file.
    """
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(source, device="cpu")
    transformer = model[0]
    folder = Path(model_dir) / f"embedding-onnx-{weights_key(transformer.model)}"
    path = prepare_onnx(transformer.model, folder, variant, vnni)
    transformer.model = OnnxTransformer(path, transformer.model.config, threads or torch.get_num_threads())
    return model


def load_embedding_model(source: str, model_dir: Path, setting: str, device: str, dtype_setting: str = "auto",
                         int8: bool = True):
    """The embedder the settings ask for: (SentenceTransformer, description such as "onnx int8"); ``int8``: as
    ``choose_embedding_backend``'s."""
    from sentence_transformers import SentenceTransformer

    from worker.devices import cpu_has_fast_bf16, resolve_dtype

    backend, kind, reason = choose_embedding_backend(setting, device, cpu_has_fast_bf16(), int8)
    if backend == "onnx":
        try:
            return load_onnx_embedder(source, model_dir, kind), f"onnx {kind} ({reason})"
        except Exception:
            if setting != "auto":
                raise
            log.warning("ONNX embedder unavailable, using torch", exc_info=True)
            kind, reason = "auto", "ONNX failed; torch"
    dtype = resolve_dtype(dtype_setting if dtype_setting != "auto" else kind, device)
    model = SentenceTransformer(source, device=device, model_kwargs={"dtype": dtype})
    return model, f"torch {str(dtype).removeprefix('torch.')} ({reason})"
