"""Submit-to-done benchmark of the whole service, as a user runs it.

Starts `topicq up` in a temporary data directory, submits N documents of a labelled corpus from
../shared/data over the HTTP API, and prints the wall time from submit to done, the time in each stage,
the number of topics, the outlier share, agreement with the corpus labels, and the labels beside their
keywords.

    python -m bench.service --corpus python_docs --n 2000
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from bench.corpora import sample
from cli.local_service import bench_service
from shared.schemas import FINISHED

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="python_docs", choices=["python_docs", "news_sections"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--params", default="{}", help="job params as JSON")
    args = parser.parse_args()
    texts, labels = sample(args.corpus, args.n)
    # A plain `kill` should stop the service it started too: run the `finally` below rather than die at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with bench_service() as service:
        submitted = time.perf_counter()
        job = service.post(
            "/api/v1/jobs", json={"documents": texts, "params": json.loads(args.params)}
        ).json()
        accepted = time.perf_counter() - submitted
        stage_started: dict[str, float] = {}

        def done():
            state = service.get(f"/api/v1/jobs/{job['id']}").json()
            stage_started.setdefault(state["stage"], time.perf_counter())
            return state if state["status"] in FINISHED else None

        final = service.wait_until(done, 3600, "the job", every=0.25)
        total = time.perf_counter() - submitted
        topics = service.get(f"/api/v1/jobs/{job['id']}/topics").json()
        docs = service.get(f"/api/v1/jobs/{job['id']}/documents?limit=10000").json()["documents"]

    print(f"corpus: {args.corpus}, {len(texts)} documents; status {final['status']}")
    print(f"accepted (HTTP 202) in {accepted:.2f} s; submit to done: {total:.1f} s")
    marks = sorted(stage_started.items(), key=lambda kv: kv[1]) + [("end", submitted + total)]
    print("stages (as seen by polling): " + ", ".join(
        f"{name} {end - start:.1f} s" for (name, start), (_, end) in zip(marks, marks[1:]) if name != "done"))
    n_out = topics["n_outliers"]
    print(f"topics: {len(topics['topics'])}; outliers: {n_out} ({100 * n_out / len(texts):.1f}%)")
    truth = [labels[d["index"]] for d in docs]
    found = [d["topic"] for d in docs]
    print(f"agreement with the corpus labels: NMI {normalized_mutual_info_score(truth, found):.3f}, "
          f"AMI {adjusted_mutual_info_score(truth, found):.3f}")
    print(f"\n{'topic':>5} {'size':>5}  {'label':<60} keywords")
    for t in topics["topics"]:
        print(f"{t['topic']:>5} {t['size']:>5}  {t['label'][:60]:<60} {', '.join(t['keywords'])}")


if __name__ == "__main__":
    main()
