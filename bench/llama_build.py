"""llama-cpp-python built for this CPU against the portable AVX2 build, side by side in one run.

``make install`` compiles llama-cpp-python with ``-march=native`` (deploy/llama_wheel.py); the portable build
(requirements/llama-cmake-args.txt: AVX2, FMA, F16C) is what the Docker image and ``LLAMA_BUILD=portable`` get.
This bench labels the same topics with both, each in a fresh process that loads the bundled GGUF as a
worker does, in alternating rounds: s/label at the default prompt budget, prefill and decode tokens/s, how
many greedy labels came out the same and their agreement in meaning (the mean cosine of the label
embeddings). A build that is not in its wheelhouse yet is compiled there first (4 to 11 minutes on 2 cores,
once).

    python -m bench.llama_build                 # the 8 largest topics of 2,000 Python-docs paragraphs, 2 rounds
    python -m bench.llama_build --rounds 3 --max-topics 5

The last line is ``ratio native/portable: X``: how many times faster per label the build for this CPU is.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench.labels import agreement, largest_topics, topics_of
from bench.memory import cpu_description
from shared.settings import Settings
from worker.pipeline.label import LabelInput, label_topics

ROOT = Path(__file__).resolve().parent.parent
BUILDS = ("native", "portable")


def wheel_tool():
    """deploy/llama_wheel.py as a module (it is a script: deploy/ is no package)."""
    spec = importlib.util.spec_from_file_location("llama_wheel", ROOT / "deploy" / "llama_wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unpacked(build: str, into: Path) -> Path:
    """The wheel of ``build`` (compiled into its wheelhouse if missing) unpacked into ``into/build``."""
    tool = wheel_tool()
    version = tool.pinned_version(tool.CONSTRAINTS.read_text())
    args = tool.cmake_args(build, tool.CMAKE_ARGS.read_text())
    wheel = tool.ensure_wheel(version, build, args, tool.build_key(build, args, tool.this_cpu_isa()))
    target = into / build
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def build_row(inputs_file: str) -> None:
    """One build's row, in this process (whose llama_cpp comes first on sys.path): one JSON line."""
    import llama_cpp

    from worker.labeling import bundled
    from worker.labeling.llamacpp import LlamaCppLabeler

    settings = Settings(_env_file=None)
    inputs = [LabelInput(t["keywords"], t["documents"]) for t in json.loads(Path(inputs_file).read_text())]
    gguf = bundled.assemble_gguf(bundled.lookup(settings.llm_model), settings.model_dir)
    started = time.perf_counter()
    labeler = LlamaCppLabeler.load(gguf, threads=None, max_new_tokens=settings.llm_max_new_tokens,
                                   name=settings.llm_model)
    load = time.perf_counter() - started
    label_topics(inputs[:1], labeler, doc_budget=settings.llm_doc_tokens, doc_count=settings.llm_docs)  # prefix
    llama_cpp.llama_perf_context_reset(labeler.llm.ctx)
    started = time.perf_counter()
    labels = label_topics(inputs, labeler, doc_budget=settings.llm_doc_tokens, doc_count=settings.llm_docs)
    seconds = (time.perf_counter() - started) / len(inputs)
    perf = llama_cpp.llama_perf_context(labeler.llm.ctx)
    print(json.dumps({
        "labels": [x.text for x in labels], "seconds": seconds, "load": load, "lib": llama_cpp.__file__,
        "prefill": 1000 * perf.n_p_eval / max(perf.t_p_eval_ms, 1),
        "decode": 1000 * perf.n_eval / max(perf.t_eval_ms, 1),
    }))


def run_row(build: str, lib: Path, inputs_file: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lib), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "bench.llama_build", "--row", inputs_file], env=env,
                          capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if not row["lib"].startswith(str(lib)):
        raise RuntimeError(f"the {build} row imported {row['lib']}, not the build under {lib}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="python_docs", choices=["news_sections", "python_docs"])
    parser.add_argument("--n-docs", type=int, default=2000)
    parser.add_argument("--min-topic-size", type=int, default=22)
    parser.add_argument("--max-topics", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: one build's row on this inputs file
    args = parser.parse_args()
    if args.row:
        return build_row(args.row)
    from worker.models import load_embedder

    settings = Settings(_env_file=None)
    embedder = load_embedder(settings)
    print(f"CPU: {cpu_description()}")
    with tempfile.TemporaryDirectory() as scratch:
        libs = {build: unpacked(build, Path(scratch)) for build in BUILDS}
        texts, doc_topics, topic_model = topics_of(args.corpus, args.n_docs, args.min_topic_size, embedder)
        inputs = largest_topics(texts, doc_topics, topic_model, args.max_topics)[3]
        inputs_file = str(Path(scratch) / "inputs.json")
        Path(inputs_file).write_text(json.dumps([{"keywords": x.keywords, "documents": x.documents} for x in inputs]))
        print(f"{args.corpus}: {len(texts)} documents, the {len(inputs)} largest topics, "
              f"{settings.llm_docs} documents x {settings.llm_doc_tokens} tokens a prompt, {args.rounds} rounds")
        rows: dict[str, list[dict]] = {build: [] for build in BUILDS}
        for round_ in range(args.rounds):
            for build in BUILDS if round_ % 2 == 0 else BUILDS[::-1]:
                rows[build].append(run_row(build, libs[build], inputs_file))
                print(f"  round {round_ + 1} {build}: {rows[build][-1]['seconds']:.2f} s/label", file=sys.stderr)

    def best(build: str, key: str, pick=min) -> float:
        return pick(row[key] for row in rows[build])

    print(f"\n{'build':10}{'s/label (best)':>16}{'each round':>22}{'prefill tok/s':>15}{'decode tok/s':>14}"
          f"{'load s':>8}  same labels as native, agreement")
    reference = rows["native"][0]["labels"]
    vectors = {build: embedder.encode([x or "-" for x in rows[build][0]["labels"]], normalize_embeddings=True)
               for build in BUILDS}
    for build in BUILDS:
        each = ", ".join(f"{row['seconds']:.2f}" for row in rows[build])
        same = sum(a == b for a, b in zip(rows[build][0]["labels"], reference, strict=True))
        agree = agreement(vectors[build], vectors["native"])
        print(f"{build:10}{best(build, 'seconds'):>16.2f}{each:>22}{best(build, 'prefill', max):>15.1f}"
              f"{best(build, 'decode', max):>14.1f}{best(build, 'load'):>8.1f}  {same}/{len(reference)}, {agree:.3f}")
    for i, label in enumerate(reference):
        other = rows["portable"][0]["labels"][i]
        print(f"  {i:>2}  {label[:40]:<42}{other[:40] if other != label else '(same)'}")
    print(f"ratio native/portable: {best('portable', 'seconds') / best('native', 'seconds'):.2f}")


if __name__ == "__main__":
    main()
