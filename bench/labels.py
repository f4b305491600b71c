"""Label benchmark, side by side in one run on the same topics, representative documents, keywords, prompt
and model:

  (a)  BERTopic's TextGeneration as the recipe uses it: one pipeline call per topic, full documents,
       500 new tokens (transformers, the weights in what `auto` gives transformers on this machine);
  (b)  topicq's transformers labeller as it was before llama.cpp (shared-prefix KV cache, batches, stop
       after the label line, 5 documents cut to 100 tokens);
  (c)  topicq's llama.cpp labeller on the GGUF as shipped (the prefix's KV state saved once), with (b)'s
       prompt, so (c) against (b) is the engine alone;
  (d)  what `TOPICQ_LLM_BACKEND=auto` picks here at the default prompt budget (TOPICQ_LLM_DOCS x
       TOPICQ_LLM_DOC_TOKENS), loaded and run in a fresh process exactly as a worker does (both models
       loaded), so its peak RSS is a worker's;
  (e)  the backend `auto` did not pick, run exactly as (d) (same budget, a fresh worker process): the
       measurement `auto`'s rule for this kind of CPU rests on (left out with --no-llama-cpp);

then the prompt budget (documents cut to 100, 60 or 40 tokens; 5 or 3 of them) on the llama.cpp path, and
the bundled 0.5B model, each against the labels of the full prompt (a) and of (b). Agreement is the mean
cosine of the label embeddings (all-MiniLM-L6-v2); hygiene counts usable, distinct labels of 1-10 words.

    python -m bench.labels                  # the 10 largest topics of 2,000 Python-docs paragraphs
    python -m bench.labels --max-topics 5   # quicker
    python -m bench.labels --corpus news_sections --n-docs 800 --min-topic-size 15 --recipe-topics 2

The default corpus has short documents, as the recipe's arXiv abstracts were: on long news articles (a)
prompts with five whole articles and runs on for minutes a topic, so --recipe-topics limits it to the
largest few topics there (its s/label and agreement then come from those).

The last lines are `ratio (e)/(d): X`, `ratio (d)/(a): X` and `ratio (d)/(b): X`: how many times faster per
label (d) is (an (e)/(d) under 1 says `auto` picked the slower backend on this CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.corpora import sample
from bench.memory import PeakRSS, cpu_description
from shared.prompts import EXAMPLE_ANSWER, EXAMPLE_PROMPT, MAIN_PROMPT, SYSTEM_PROMPT, build_messages, clean_label
from shared.settings import Settings
from worker.pipeline.label import LabelInput, label_topics

BUDGETS = [(100, 5), (60, 5), (40, 5), (100, 3), (60, 3), (40, 3)]  # (tokens per document, documents)
BEFORE = (100, 5)  # the prompt budget before the llama.cpp backend: (b) and (c) use it


class SameCut:
    """Hands TextGeneration each document cut exactly as topicq's labeller cuts it (its tokenizer hook)."""

    def __init__(self, labeler, budget: int) -> None:
        self.labeler, self.budget = labeler, budget

    def encode(self, document: str) -> list[str]:
        return [self.labeler.truncate(document, self.budget)]

    def decode(self, chunks: list[str]) -> str:
        return chunks[0]


def topics_of(corpus: str, n_docs: int, min_topic_size: int, embedder):
    from worker.pipeline.cluster import cluster
    from worker.pipeline.embed import embed
    from worker.pipeline.reduce import fit_umap
    from worker.pipeline.represent import represent

    texts, _ = sample(corpus, n_docs)
    embeddings = embed(texts, embedder)
    _, reduced = fit_umap(embeddings)
    _, clusters = cluster(reduced, min_topic_size, max(2, min_topic_size // 5))
    _, doc_topics, topic_model = represent(texts, embeddings, clusters, embedder)
    return texts, doc_topics, topic_model


def largest_topics(texts: list[str], doc_topics, topic_model, max_topics: int):
    """The ``max_topics`` largest topics (0: all): their keywords by topic id, their c-TF-IDF rows, the documents
    frame TextGeneration reads, and one LabelInput each (keywords, 5 representative documents)."""
    keyword_topics = {t: words for t, words in topic_model.topic_representations_.items() if t >= 0}
    if max_topics and len(keyword_topics) > max_topics:
        # Topic ids run by size; keeping the first N keeps the rows of c_tf_idf_ aligned.
        keyword_topics = {t: keyword_topics[t] for t in sorted(keyword_topics)[:max_topics]}
    first_row = 1 if -1 in topic_model.topic_representations_ else 0
    c_tf_idf = topic_model.c_tf_idf_[first_row : first_row + len(keyword_topics)]
    documents = pd.DataFrame({"Document": texts, "Topic": doc_topics, "ID": range(len(texts))})
    representative, _, _, _ = topic_model._extract_representative_docs(c_tf_idf, documents, keyword_topics, 500, 5)
    inputs = [LabelInput([w for w, _ in keyword_topics[t]], representative[t]) for t in sorted(keyword_topics)]
    return keyword_topics, c_tf_idf, documents, inputs


def recipe_prompt(tokenizer) -> str:
    """The recipe's prompt rendered through the model's chat template, tags left for TextGeneration to fill."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": EXAMPLE_PROMPT},
        {"role": "assistant", "content": EXAMPLE_ANSWER},
        {"role": "user", "content": MAIN_PROMPT},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def recipe_generation(settings: Settings):
    """BERTopic's TextGeneration as the recipe builds it, on ``settings``' LLM through a transformers pipeline:
    one call per topic, its 5 most representative documents whole, up to 500 new tokens, repetition penalty
    1.1, greedy. Returns (the HFLabeler holding the model and tokenizer, the TextGeneration)."""
    from bertopic.representation import TextGeneration
    from transformers import pipeline

    from worker.labeling.hf import HFLabeler

    hf = HFLabeler.load(settings)
    generator = pipeline("text-generation", model=hf.model, tokenizer=hf.tokenizer,
                         max_new_tokens=500, repetition_penalty=1.1, do_sample=False)
    return hf, TextGeneration(generator, prompt=recipe_prompt(hf.tokenizer), nr_docs=5)


def arguments(**defaults) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="python_docs", choices=["news_sections", "python_docs"])
    parser.add_argument("--n-docs", type=int, default=2000)
    parser.add_argument("--min-topic-size", type=int, default=22)
    parser.add_argument("--max-topics", type=int, default=10, help="label only the largest N topics (0: all)")
    parser.add_argument("--recipe-topics", type=int, default=0, help="run (a) on the largest N of them only (0: all)")
    parser.add_argument("--llm-model", default=None, help="TOPICQ_LLM_MODEL for this run (a hub id or a path)")
    parser.add_argument("--quantization", default="auto", choices=["auto", "none", "nf4"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-llama-cpp", dest="llama_cpp", action="store_false",
                        help="leave out (c), the budget table and the 0.5B row (a GPU run)")
    parser.add_argument("--worker-row", help=argparse.SUPPRESS)  # internal: run (d) on this inputs file
    parser.set_defaults(**defaults)
    return parser.parse_args()


def hygiene(labels: list[str]) -> str:
    usable = [x for x in labels if x and clean_label(x) == x and 1 <= len(x.split()) <= 10]
    return f"{len(usable)}/{len(labels)} usable, {len({x.lower() for x in labels})} distinct"


def label_texts(inputs: list[LabelInput], labeler, tokens: int, docs: int) -> list[str]:
    """The labels topicq's label stage gives ``inputs`` with ``docs`` documents of ``tokens`` tokens a prompt."""
    return [x.text for x in label_topics(inputs, labeler, doc_budget=tokens, doc_count=docs)]


def agreement(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean cosine of two rows of unit label embeddings, over the topics both have ((a) may have fewer)."""
    rows = min(len(found), len(reference))
    return float(np.mean(np.sum(found[:rows] * reference[:rows], axis=1)))


def timed(run, n: int) -> tuple[list[str], float, float]:
    """(labels, seconds per label, peak RSS GiB) of ``run()``."""
    with PeakRSS() as memory:
        started = time.perf_counter()
        labels = run()
        seconds = (time.perf_counter() - started) / n
    print(f"  ... {seconds:.2f} s/label: {labels[:3]}", file=sys.stderr, flush=True)
    return labels, seconds, memory.gib


def worker_row(inputs_file: str) -> None:
    """(d): load both models as a worker does, label the topics, print one JSON line."""
    from worker.models import get_models

    payload = json.loads(Path(inputs_file).read_text())
    inputs = [LabelInput(t["keywords"], t["documents"]) for t in payload["topics"]]
    settings = Settings(_env_file=None, **payload["overrides"])
    with PeakRSS() as memory:  # sampled from here: ru_maxrss would count the parent's pages from the fork
        started = time.perf_counter()
        models = get_models(settings)
        load = time.perf_counter() - started
        loaded = memory.process.memory_info().rss / 2**30
        started = time.perf_counter()
        labels = label_texts(inputs, models.labeler, settings.llm_doc_tokens, settings.llm_docs)
        seconds = (time.perf_counter() - started) / len(inputs)
    print(json.dumps({"labels": labels, "seconds": seconds, "load": load, "peak_gib": memory.gib,
                      "loaded_gib": loaded, "choice": models.label_backend.as_dict(),
                      "embeddings": models.embedding_backend}))


def run_worker_row(inputs: list[LabelInput], overrides: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"topics": [{"keywords": t.keywords, "documents": t.documents} for t in inputs],
                   "overrides": overrides}, handle)
    done = subprocess.run([sys.executable, "-m", "bench.labels", "--worker-row", handle.name],
                          capture_output=True, text=True, check=True)
    Path(handle.name).unlink()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace | None = None) -> None:
    args = args or arguments()
    if args.worker_row:
        return worker_row(args.worker_row)
    from worker.labeling import bundled
    from worker.models import load_embedder

    overrides = {"llm_quantization": args.quantization, "device": args.device}
    if args.llm_model:
        overrides["llm_model"] = args.llm_model
    settings = Settings(_env_file=None, **overrides)
    embedder = load_embedder(settings)
    texts, doc_topics, topic_model = topics_of(args.corpus, args.n_docs, args.min_topic_size, embedder)

    keyword_topics, c_tf_idf, documents, inputs = largest_topics(texts, doc_topics, topic_model, args.max_topics)
    n, (budget, docs) = len(inputs), BEFORE
    print(f"{args.corpus}: {len(texts)} documents, {n} topics labelled; model {settings.llm_model}; (b) and (c) "
          f"with {docs} documents x {budget} tokens, (d) {settings.llm_docs} x {settings.llm_doc_tokens}")
    print(f"CPU: {cpu_description()}; Python {platform.python_version()}")

    rows: dict[str, tuple[float, float]] = {}  # name -> (s/label, peak RSS GiB)
    labels: dict[str, list[str]] = {}
    hf, recipe = recipe_generation(Settings(_env_file=None, **overrides, llm_backend="transformers"))

    k = args.recipe_topics or n
    recipe_topics = {t: keyword_topics[t] for t in sorted(keyword_topics)[:k]}

    def run_recipe() -> list[str]:
        answers = recipe.extract_topics(topic_model, documents, c_tf_idf[:k], recipe_topics)
        return [clean_label(answers[t][0][0]) or "" for t in sorted(recipe_topics)]

    name_a, name_b = "(a) TextGeneration (recipe)", f"(b) transformers {hf.model.dtype}".replace("torch.", "")
    labels[name_a], *rows[name_a] = timed(run_recipe, k)
    labels[name_b], *rows[name_b] = timed(lambda: label_texts(inputs, hf, budget, docs), n)
    hf = recipe = None  # free the transformers model before the llama.cpp rows

    cpp = None
    if args.llama_cpp:
        import llama_cpp

        from worker.labeling.llamacpp import LlamaCppLabeler

        gguf = bundled.assemble_gguf(bundled.lookup(settings.llm_model), settings.model_dir)
        cpp = LlamaCppLabeler.load(gguf, threads=None, max_new_tokens=settings.llm_max_new_tokens,
                                   name=settings.llm_model)
        name_c = "(c) llama.cpp gguf"
        llama_cpp.llama_perf_context_reset(cpp.llm.ctx)
        labels[name_c], *rows[name_c] = timed(lambda: label_texts(inputs, cpp, budget, docs), n)
        perf = llama_cpp.llama_perf_context(cpp.llm.ctx)
        decode = perf.t_eval_ms / max(1.0, perf.t_eval_ms + perf.t_p_eval_ms)
        split = (f"llama.cpp in (c): prefill {1000 * perf.n_p_eval / max(perf.t_p_eval_ms, 1):.1f} tokens/s "
                 f"({perf.n_p_eval} tokens), decode {1000 * perf.n_eval / max(perf.t_eval_ms, 1):.1f} tokens/s "
                 f"({perf.n_eval} tokens): decoding is {100 * decode:.0f}% of the time, the most that batching "
                 "several topics' decoding could save")

    worker = run_worker_row(inputs, overrides)
    choice = worker["choice"]
    name_d = f"(d) auto: {choice['backend']} {choice['dtype']}"
    labels[name_d], rows[name_d] = worker["labels"], (worker["seconds"], worker["peak_gib"])
    name_e = None
    if args.llama_cpp:
        from worker.labeling.choose import LLAMA_CPP, TRANSFORMERS

        other = TRANSFORMERS if choice["backend"] == LLAMA_CPP else LLAMA_CPP
        alternative = run_worker_row(inputs, overrides | {"llm_backend": other})
        name_e = f"(e) not picked: {other} {alternative['choice']['dtype']}"
        labels[name_e], rows[name_e] = alternative["labels"], (alternative["seconds"], alternative["peak_gib"])

    vectors = {name: embedder.encode([x or "-" for x in found], normalize_embeddings=True)
               for name, found in labels.items()}


    print(f"\n{'':34}{'s/label':>9}{'peak RSS GiB':>14}{'agree (a)':>11}{'agree (b)':>11}  hygiene")
    for name, (seconds, gib) in rows.items():
        with_a, with_b = agreement(vectors[name], vectors[name_a]), agreement(vectors[name], vectors[name_b])
        print(f"{name:34}{seconds:>9.2f}{gib:>14.2f}{with_a:>11.3f}{with_b:>11.3f}  {hygiene(labels[name])}")
    print(f"(d) chose {choice['backend']} on {choice['device']} ({choice['dtype']}): {choice['reason']}; "
          f"embeddings: {worker['embeddings']}; a worker with both models loaded in {worker['load']:.1f} s: "
          f"{worker['loaded_gib']:.2f} GiB resident, {worker['peak_gib']:.2f} GiB at its peak while labelling")
    if name_e is not None:
        print(f"(e) a worker with both models loaded in {alternative['load']:.1f} s: {alternative['loaded_gib']:.2f} "
              f"GiB resident, {alternative['peak_gib']:.2f} GiB at its peak while labelling")
    print("(peak RSS of (a)-(c) is this bench's process, which holds every model of the earlier rows)")
    import torch

    if torch.cuda.is_available():
        print(f"GPU memory of (a)-(b): peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB "
              f"({torch.cuda.get_device_name()})")
    if cpp is not None:
        print(split)

    if cpp is not None:
        budget_table(cpp, inputs, embedder, vectors[name_a], vectors[name_b], settings)

    print(f"\n{'topic':>5}  " + "".join(f"{name[:30]:<32}" for name in labels))
    for i in range(n):
        cells = [found[i] if i < len(found) else "" for found in labels.values()]  # (a) may have fewer topics
        print(f"{i:>5}  " + "".join(f"{cell[:30]:<32}" for cell in cells))
    print()
    seconds_d = rows[name_d][0]
    if name_e is not None:
        print(f"ratio (e)/(d): {rows[name_e][0] / seconds_d:.2f}")
    print(f"ratio (d)/(a): {rows[name_a][0] / seconds_d:.2f}")
    print(f"ratio (d)/(b): {rows[name_b][0] / seconds_d:.2f}")


def budget_table(cpp, inputs, embedder, full_vectors, b_vectors, settings) -> None:
    """The llama.cpp path at each prompt budget, and the bundled 0.5B model at the default one."""
    from worker.labeling import bundled
    from worker.labeling.llamacpp import LlamaCppLabeler

    n = len(inputs)
    print(f"\nPrompt budget on the llama.cpp path ({settings.llm_model}); agreement with the full prompt (a) "
          "and with (b):")
    print(f"{'docs x tokens':>14}{'own tokens':>15}{'s/label':>9}{'agree (a)':>11}{'agree (b)':>11}  hygiene")

    def row(labeler, title: str, tokens: int, docs: int) -> None:
        uncached = np.mean([labeler.prompt_tokens(build_messages(
            [labeler.truncate(d, tokens) for d in t.documents[:docs]], t.keywords))[1] for t in inputs])
        found, seconds, _ = timed(lambda: label_texts(inputs, labeler, tokens, docs), n)
        found_vectors = embedder.encode([x or "-" for x in found], normalize_embeddings=True)
        print(f"{title:>14}{uncached:>15.0f}{seconds:>9.2f}{agreement(found_vectors, full_vectors):>11.3f}"
              f"{agreement(found_vectors, b_vectors):>11.3f}  {hygiene(found)}")

    for tokens, docs in BUDGETS:
        row(cpp, f"{docs} x {tokens}", tokens, docs)
    small = bundled.lookup("bundled:qwen2.5-coder-0.5b-instruct")
    try:
        gguf = bundled.assemble_gguf(small, settings.model_dir)
    except bundled.BundledModelError as exc:
        print(f"0.5B model: not installed ({exc})")
        return
    labeler = LlamaCppLabeler.load(gguf, threads=None, max_new_tokens=settings.llm_max_new_tokens, name=small.name)
    row(labeler, f"0.5B {settings.llm_docs} x {settings.llm_doc_tokens}", settings.llm_doc_tokens, settings.llm_docs)
    print("(own tokens: a label prompt's tokens after the shared prefix, which is evaluated once per worker)")


if __name__ == "__main__":
    main()
