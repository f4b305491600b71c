"""Embedding speed and fidelity: the backends of worker/embedders.py against today's float32 torch path, on the
same documents of a real corpus, side by side in one run.

Rows: torch float32 (the path of CPUs without AVX512-BF16), torch bfloat16 (only where the CPU has it),
torch float32 with max_seq_length 128, ONNX Runtime float32 (fused graph), ONNX int8 (per-channel weights;
8-bit on VNNI CPUs, and the 7-bit file that CPUs without VNNI get), and the model ``auto`` picks, loaded the
way the worker loads it. For each: documents per second (windows included, as the worker embeds), the model's
resident memory and the embedding's peak above it, mean and min cosine to the float32 torch embeddings, and
the NMI against the corpus labels of the topicq pipeline run on those embeddings (seed 42, no labels), next
to float32's, with the NMI between the two clusterings. To spread the noise of a shared CPU evenly, the
documents are embedded in rounds (every k-th document) and each round runs every row in a rotating order.

    python -m bench.embed                              # python_docs, 1,000 sampled paragraphs
    python -m bench.embed --corpus news_sections --n 300
    python -m bench.embed --as-avx2                    # torch limited to AVX2 (ONNX Runtime cannot be)

``--as-avx2`` restarts itself with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, so torch's kernels are those
of an AVX2-only CPU; ONNX Runtime has no such switch and keeps this CPU's kernels (AVX512, VNNI), but the
int8 rows then use the 7-bit file an AVX2 CPU gets, so their vectors are the ones such a CPU computes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["news_sections", "python_docs"], default="python_docs")
    parser.add_argument("--n", type=int, default=1000, help="documents sampled from the corpus")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the documents are embedded in")
    parser.add_argument("--as-avx2", action="store_true", help="limit torch to AVX2 (see above)")
    args = parser.parse_args()
    if args.as_avx2 and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        os.execve(sys.executable, [sys.executable, "-m", "bench.embed", *sys.argv[1:]], {**os.environ, **AVX2_ENV})
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run(args)


def run(args) -> None:
    import numpy as np
    import psutil
    import torch
    from sentence_transformers import SentenceTransformer
    from sklearn.metrics import normalized_mutual_info_score

    from bench.corpora import sample
    from bench.memory import PeakRSS, cpu_description
    from bench.quality import topicq
    from shared.settings import Settings
    from worker.devices import cpu_has_fast_bf16
    from worker.embedders import (choose_embedding_backend, cpu_has_vnni, load_onnx_embedder, prepare_onnx,
                                   weights_key)
    from worker.models import embedding_source
    from worker.pipeline.embed import embed

    settings = Settings(_env_file=None)
    source = embedding_source(settings.embedding_model)
    fast_bf16 = cpu_has_fast_bf16() and not args.as_avx2
    vnni = cpu_has_vnni() and not args.as_avx2
    texts, truth = sample(args.corpus, args.n)
    process = psutil.Process()
    print(f"{args.corpus}: {len(texts)} documents; torch {torch.__version__} CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads; CPU {cpu_description()}"
          f"{'; as AVX2: torch capped, fast bf16 off, int8 rows 7-bit' if args.as_avx2 else ''}")

    cache = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    torch_model = SentenceTransformer(source, device="cpu")
    folder = cache / f"embedding-onnx-{weights_key(torch_model[0].model)}"
    preparation = {}
    for variant, vnni_file in (("float32", vnni), ("int8", True), ("int8", False)):
        started = time.perf_counter()
        prepare_onnx(torch_model[0].model, folder, variant, vnni=vnni_file)
        preparation[f"{variant}{'' if variant == 'float32' or vnni_file else ' 7-bit'}"] = time.perf_counter() - started
    print("preparation (once, into the model cache): " + ", ".join(f"{k} {v:.1f} s" for k, v in preparation.items()))
    del torch_model

    backend, kind, reason = choose_embedding_backend("auto", "cpu", fast_bf16)

    def torch_row(dtype=torch.float32, max_seq_length=None):
        def load():
            model = SentenceTransformer(source, device="cpu", model_kwargs={"dtype": dtype})
            if max_seq_length:
                model.max_seq_length = max_seq_length
            return model
        return load

    def onnx_row(variant, vnni_file):
        return lambda: load_onnx_embedder(source, cache, variant, vnni=vnni_file)

    rows = {"float32": ("torch float32 (today, no fast bf16)", torch_row())}  # short name: (row, loader)
    if fast_bf16:
        rows["bf16"] = ("torch bfloat16 (today, AVX512-BF16)", torch_row(torch.bfloat16))
    rows["seq128"] = ("torch float32, max_seq_length 128", torch_row(max_seq_length=128))
    rows["onnx-f32"] = ("onnx float32, fused", onnx_row("float32", vnni))
    if vnni:
        rows["onnx-int8"] = ("onnx int8 per-channel, 8-bit (VNNI)", onnx_row("int8", True))
    rows["onnx-int8-7bit"] = ("onnx int8 per-channel, 7-bit (no VNNI)", onnx_row("int8", False))
    rows["auto"] = (f"auto: {backend} {kind}", torch_row(torch.bfloat16 if fast_bf16 else torch.float32)
                    if backend == "torch" else onnx_row(kind, vnni))

    models, loaded_mib = {}, {}
    for name, (_, load) in rows.items():
        before = process.memory_info().rss
        models[name] = load()
        embed(texts[:4], models[name])  # warm up: first-call allocations and ONNX Runtime's arena
        loaded_mib[name] = (process.memory_info().rss - before) / 2**20

    names = list(models)
    seconds = dict.fromkeys(names, 0.0)
    peak_mib = dict.fromkeys(names, 0.0)
    parts = {name: [] for name in names}
    order = [np.arange(r, len(texts), args.rounds) for r in range(args.rounds)]
    for round_number, members in enumerate(order):
        chunk = [texts[i] for i in members]
        for shift in range(len(names)):
            name = names[(round_number + shift) % len(names)]
            before = process.memory_info().rss
            with PeakRSS() as memory:
                started = time.perf_counter()
                parts[name].append(embed(chunk, models[name], batch_size=settings.embedding_batch_size,
                                         max_windows=settings.embedding_windows))
                seconds[name] += time.perf_counter() - started
            peak_mib[name] = max(peak_mib[name], (memory.peak - before) / 2**20)
    inverse = np.argsort(np.concatenate(order))
    vectors = {name: np.concatenate(parts[name])[inverse] for name in names}

    base = names[0]
    found = {name: np.asarray(topicq(texts, vectors[name], models[name], 42)[0]) for name in names}
    nmi = {name: normalized_mutual_info_score(truth, found[name]) for name in names}
    print(f"\n{'':40}{'docs/s':>8}{'x f32':>7}{'model MiB':>10}{'peak+MiB':>9}{'cos mean':>9}{'cos min':>8}"
          f"{'NMI':>7}{'dNMI':>7}{'NMI~f32':>8}")
    for name in names:
        cosine = np.sum(vectors[name] * vectors[base], axis=1)
        print(f"{rows[name][0]:40}{len(texts) / seconds[name]:>8.1f}{seconds[base] / seconds[name]:>7.2f}"
              f"{loaded_mib[name]:>10.0f}{peak_mib[name]:>9.0f}{cosine.mean():>9.4f}{cosine.min():>8.4f}"
              f"{nmi[name]:>7.3f}{nmi[name] - nmi[base]:>+7.3f}"
              f"{normalized_mutual_info_score(found[base], found[name]):>8.3f}")
    print(f"\nauto picks {backend} {kind}: {reason}")
    print("NMI: the topicq pipeline (seed 42) against the labels; NMI~f32: its topics against float32's topics")
    for name in names[1:]:
        print(f"ratio {name}/float32: {seconds[base] / seconds[name]:.2f}")


if __name__ == "__main__":
    main()
