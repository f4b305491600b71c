"""A user's journey through the real service in headless Chromium: `topicq up` (its own Redis, the real workers
with the bundled embedding model and LLM, the web server) on SQLite; a .jsonl file uploaded through the form; the
progress bar watched; the topics, the map, search, a topic renamed, the downloads (the CSV, the BERTopic model
loaded as a notebook would), and new documents put into the topics by the service and by the downloaded model."""

from __future__ import annotations

import csv
import json
import re
import time
import zipfile
from collections import Counter

import pytest

from cli.local_service import LocalService, service_env
from cli.redis_server import free_port
from tests.browser import page, screenshot  # noqa: F401
from tests.conftest import read_corpus
from tests.journey_support import hover, map_labels, screen, watch_progress, wheel_zoom

pytestmark = pytest.mark.e2e

N_DOCUMENTS = 300
HELD_OUT = 20
NEW_NAME = "Journey: the renamed topic"
UI_TIMEOUT_MS = 20_000
JOB_TIMEOUT_S = 900
HOVER_GAP_PX = 10  # a point hovered has no other point this close, so the tooltip is surely about it


def headline(record: dict) -> str:
    return record["text"].split("\n", 1)[0].strip()


def test_a_user_uploads_a_file_watches_it_run_and_works_with_its_topics(page, tmp_path, embedder):  # noqa: F811
    records = read_corpus("news_sections.jsonl", every=5, limit=N_DOCUMENTS)
    # Held out: the line after each one the job has (the job takes lines 0, 5, 10, ...).
    held_out = read_corpus("news_sections.jsonl", limit=5 * HELD_OUT)[1::5]
    assert len(held_out) == HELD_OUT and not {r["id"] for r in held_out} & {r["id"] for r in records}
    upload = tmp_path / "news.jsonl"
    upload.write_text("".join(json.dumps({"text": r["text"], "title": headline(r)}) + "\n" for r in records))

    env = service_env(tmp_path / "var", free_port(), f"sqlite:///{tmp_path / 'topicq.db'}")
    service = LocalService(env, tmp_path / "up.log")
    page.set_default_timeout(UI_TIMEOUT_MS)
    started = time.monotonic()
    try:
        service.wait_ready()
        print(f"service ready in {time.monotonic() - started:.0f} s")

        # Submit through the form, with a file.
        page.goto(service.base + "/")
        page.fill("input[name=name]", "journey news")
        page.set_input_files("input[name=file]", str(upload))
        page.fill("input[name=min_topic_size]", "7")
        assert page.is_checked("input[type=checkbox][name=generate_labels]")
        page.click("button:has-text('Find topics')")
        page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]+$"))
        job_id = page.url.rsplit("/", 1)[1]
        assert page.text_content("h1") == "journey news"
        assert f"{N_DOCUMENTS} documents" in page.text_content("p.meta")

        # The progress bar moves, forwards only, until the page reloads into the results.
        progress = watch_progress(page, JOB_TIMEOUT_S)
        moving = [v for v in progress.values if 0 < v < 1]
        print(f"job done in {progress.seconds:.0f} s; {len(progress.values)} samples, {len(set(moving))} distinct "
              f"values in (0, 1); screenshot at {progress.screenshot_at}")
        assert progress.values == sorted(progress.values), f"the progress bar went backwards: {progress.values}"
        assert len(set(moving)) >= 3, f"the progress bar barely moved: {progress.values}"
        assert progress.screenshot_at is not None

        job = service.get(f"/api/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        topics = service.get(f"/api/v1/jobs/{job_id}/topics").json()["topics"]
        labels = {t["topic"]: t["label"] for t in topics}
        documents = service.get(f"/api/v1/jobs/{job_id}/documents?limit=1000").json()["documents"]
        assert len(documents) == N_DOCUMENTS and len(topics) >= 3

        # Results: every topic in the table, and the map with every document.
        rows = page.locator("table.topics tbody tr")
        assert rows.count() == len(topics)
        for number, topic in enumerate(topics):
            row = rows.nth(number)
            assert row.locator("td").first.text_content() == str(topic["topic"])
            assert row.locator("td.label a").text_content() == topic["label"]
        page.wait_for_selector('#map[data-ready="1"]', timeout=60_000)
        assert page.get_attribute("#map", "data-points") == str(N_DOCUMENTS)
        screenshot(page, "journey-results")
        page.locator(".doc-map").scroll_into_view_if_needed()
        screenshot(page, "journey-map", ".doc-map")

        # Hover a point: the tooltip gives its document's topic label and title.
        on_screen = screen(page, documents)
        in_topics = [d["index"] for d in documents if d["topic"] >= 0]
        lonely = on_screen.isolated(in_topics, HOVER_GAP_PX)
        assert lonely, "no point on the map stands apart enough to hover it alone"
        probe = lonely[0]
        tip = hover(page, *on_screen.points[probe], probe)
        assert tip.index == str(probe)
        assert tip.label == labels[documents[probe]["topic"]]
        assert tip.title == headline(records[probe])
        screenshot(page, "journey-map-hover", ".doc-map")

        # Search from the job page's box: a frequent keyword of the largest topic.
        largest = max(topics, key=lambda t: t["size"])
        word = next(k for k in largest["keywords"] if re.fullmatch(r"[a-z]{3,}", k))
        page.fill("form.search input[name=q]", word)
        page.click("form.search button[type=submit]")
        page.wait_for_url(re.compile(r"/search\?q="))
        total = int(re.fullmatch(r"(\d+) documents? match\.", page.text_content("#search-total")).group(1))
        expected = service.get(f"/api/v1/jobs/{job_id}/search", params={"q": word}).json()["total"]
        assert 0 < total == expected <= N_DOCUMENTS, (word, total, expected)
        results = page.locator(".results li")
        assert results.count() == min(total, 20)
        for number in range(results.count()):
            result = results.nth(number)
            index = int(re.search(r"· document (\d+)", result.text_content()).group(1))
            topic = documents[index]["topic"]
            link = result.locator("a.topic-link")
            if topic >= 0:
                assert link.get_attribute("href") == f"/jobs/{job_id}/topics/{topic}"
                assert link.text_content() == labels[topic]
            else:
                assert link.text_content() == "outlier (no topic)"
        assert results.locator(".snippet mark").count() > 0
        screenshot(page, "journey-search")

        # The map's own search box reports the same count and highlights the matches.
        page.go_back()
        page.wait_for_selector('#map[data-ready="1"]', timeout=60_000)
        page.fill("#map-query", word)
        page.press("#map-query", "Enter")
        page.wait_for_function("() => !['', 'searching…'].includes(document.getElementById('map-status').textContent)")
        assert page.text_content("#map-status").startswith(f"{total} documents match")
        assert page.get_attribute("#map", "data-highlighted") == str(total)

        # Open the largest topic from the table and rename it.
        page.click(f"table.topics td.label a[href='/jobs/{job_id}/topics/{largest['topic']}']")
        page.wait_for_url(f"**/jobs/{job_id}/topics/{largest['topic']}")
        assert page.text_content("#topic-label") == largest["label"]
        representations = page.text_content("table.representations")
        assert ", ".join(largest["keywords"]) in representations
        assert ", ".join(largest["representations"]["KeyBERT"]) in representations
        assert f"All {largest['size']} documents" in page.text_content("body")
        assert page.locator("table.documents tbody tr").count() == min(largest["size"], 50)
        page.fill("form.rename input[name=label]", NEW_NAME)
        page.click("form.rename button:has-text('Save')")
        page.wait_for_function("(name) => document.getElementById('topic-label').textContent === name", arg=NEW_NAME)
        assert page.text_content("#generated-label") == largest["generated_label"]
        screenshot(page, "journey-topic")
        labels[largest["topic"]] = NEW_NAME

        # Back on the job page: the new name in the table and on the map.
        page.click(f"p.meta a[href='/jobs/{job_id}']")
        page.wait_for_selector('#map[data-ready="1"]', timeout=60_000)
        row = page.locator("table.topics tbody tr").nth([t["topic"] for t in topics].index(largest["topic"]))
        assert row.locator("td.label a").text_content() == NEW_NAME
        assert "(renamed)" in row.locator("td.label").text_content()
        assert f"{NEW_NAME} ({largest['size']})" in page.locator("#map-topic option").all_text_contents()
        page.locator(".doc-map").scroll_into_view_if_needed()
        members = [d["index"] for d in documents if d["topic"] == largest["topic"]]
        centre = screen(page, documents).points[members].mean(axis=0)
        share = wheel_zoom(page, *centre, share=0.3)
        print(f"zoomed in to {share:.2f} of the map's width")
        assert share < 0.3, f"the mouse wheel zoomed the map to {share:.2f} of its width only"
        page.wait_for_function("(name) => [...document.querySelectorAll('#map .annotation-text')]"
                               ".some(e => e.textContent === name)", arg=NEW_NAME, timeout=10_000)
        assert NEW_NAME in map_labels(page)
        zoomed = screen(page, documents)
        lonely = zoomed.isolated(members, HOVER_GAP_PX)
        assert lonely, "no document of the renamed topic stands apart on the zoomed map"
        tip = hover(page, *zoomed.points[lonely[0]], lonely[0])
        assert (tip.index, tip.label) == (str(lonely[0]), NEW_NAME)
        screenshot(page, "journey-map-renamed", ".doc-map")

        # Download the documents as CSV: one row per document, the renamed topic's rows with its new name.
        with page.expect_download() as download:
            page.click(".downloads a[href$='/documents.csv']")
        with open(download.value.path(), newline="") as handle:
            table = list(csv.DictReader(handle))
        assert [int(r["index"]) for r in table] == list(range(N_DOCUMENTS))
        assert [int(r["topic"]) for r in table] == [d["topic"] for d in documents]
        assert [r["title"] for r in table] == [headline(r) for r in records]
        renamed_rows = [r for r in table if int(r["topic"]) == largest["topic"]]
        assert len(renamed_rows) == largest["size"]
        assert {(r["label"], r["label_source"]) for r in renamed_rows} == {(NEW_NAME, "custom")}

        # Download the model and load it as a notebook user would.
        with page.expect_download() as download:
            page.click("#model-download")
        archive = tmp_path / "model.zip"
        download.value.save_as(archive)
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp_path / "model")
        from bertopic import BERTopic

        loaded = BERTopic.load(str(tmp_path / "model" / "topicq-model"), embedding_model=embedder)
        info = loaded.get_topic_info()
        by_topic = dict(zip(info.Topic.tolist(), info.CustomName.tolist()))
        assert set(by_topic) - {-1} == set(labels)
        assert {t: by_topic[t] for t in labels} == labels
        counts = Counter(d["topic"] for d in documents)
        assert {t: c for t, c in zip(info.Topic, info.Count) if t >= 0} == {t: counts[t] for t in labels}

        # New documents: the service and the downloaded model put them into the same topics.
        texts = [r["text"] for r in held_out]
        answer = service.post(f"/api/v1/jobs/{job_id}/assign", json={"documents": texts})
        assert answer.status_code in (200, 202), answer.text
        if answer.status_code == 202:
            location = answer.headers["Location"]
            answer = service.wait_until(lambda: (r := service.get(location)).status_code == 200 and r, 300,
                                        "the assignment")
        body = answer.json()
        assert body["status"] == "succeeded", body
        served = [a["topic"] for a in body["assignments"]]
        assert [a["label"] for a in body["assignments"]] == [labels.get(t, "") for t in served]
        predicted = [int(t) for t in loaded.transform(texts)[0]]
        differ = [(i, served[i], predicted[i]) for i in range(HELD_OUT) if served[i] != predicted[i]]
        print(f"service and notebook agree on {HELD_OUT - len(differ)} of {HELD_OUT} new documents; "
              f"differ (document, service, notebook): {differ}")
        assert len(differ) <= 0.1 * HELD_OUT, differ

        # The job page's assign form, for two documents.
        page.click("section.assign summary")
        page.fill("section.assign textarea[name=documents]", "\n".join(" ".join(t.split()) for t in texts[:2]))
        page.click("section.assign button:has-text('Assign')")
        page.wait_for_selector("#assigned", timeout=120_000)
        cells = page.locator("#assigned tbody tr td:nth-child(2)").all_text_contents()
        shown = [labels[t] if t >= 0 else "outliers (no topic)" for t in served[:2]]
        assert cells == shown
        print(f"journey took {time.monotonic() - started:.0f} s")
    finally:
        assert service.stop(), "processes of `topicq up` survived SIGTERM to its process group"
