"""The document map in headless Chromium: a job of a few thousand clustered points drawn with WebGL, its labels by
zoom, hover, the side panel, the topic filter, the outlier switch and search, on the job's page. Every test runs
under the app's real Content-Security-Policy and fails on any violation of it; one tours the other pages and
their forms, one checks the stylesheets vendored for plotly.js against what its bundle would insert."""

from datetime import timedelta

import numpy as np
import pytest

from shared import assignments, jobs
from shared.db import transaction
from tests.browser import ROOT, live_server, page, screenshot  # noqa: F401
from tests.map_data import clustered_map, label_of, texts_of, write_finished_job
from web.maps import PLOTLY_JS
from web.security import CONTENT_SECURITY_POLICY

N = 3000
N_TOPICS = 10
PROBE = 0  # a document placed alone in an empty part of the map, so the mouse finds it and nothing else
PROBE_TITLE = "The probe document"
MAP = ".doc-map"  # what the screenshots show
# The id of the <style> element plotly.js's bundle makes for maplibre-gl's stylesheet unless one is in the page.
MAPLIBRE_STYLE_ID = "9f215cf04c5486422605d13261cb87401f4e7763b6296af81e98efbc0130da53"


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: what the browser sees does not depend on the database (test_map.py runs both)."""
    return f"sqlite:///{tmp_path / 'topicq.db'}"


@pytest.fixture(autouse=True)
def csp_violations(page):  # noqa: F811
    """Every ``securitypolicyviolation`` event of any page the test opens (the app's real CSP headers), reported
    to Python as it fires, so a navigation loses none; the test fails if there was any."""
    seen: list[dict] = []
    page.expose_function("__cspViolation", lambda violation: seen.append(violation))
    page.add_init_script("""document.addEventListener("securitypolicyviolation", (e) => window.__cspViolation({
        page: location.pathname, directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample,
        source: e.sourceFile + ":" + e.lineNumber}));""")
    yield seen
    assert seen == [], f"the pages broke their Content-Security-Policy: {seen}"


@pytest.fixture
def map_job(sessions):
    """``(job id, data)``: N documents in N_TOPICS clusters, the probe alone at the emptiest spot of the plane."""
    data = clustered_map(N, N_TOPICS, seed=3)
    grid = np.stack(np.meshgrid(np.arange(2, 99, 2.0), np.arange(2, 99, 2.0)), -1).reshape(-1, 2)
    others = np.stack([data.x[1:], data.y[1:]], 1)
    nearest = np.min(((grid[:, None, :] - others[None, :, :]) ** 2).sum(-1), axis=1)
    data.x[PROBE], data.y[PROBE] = grid[np.argmax(nearest)]
    data.topic[PROBE] = 2
    documents = texts_of(data)
    documents[PROBE] = ("A document that sits by itself, read in the side panel.", PROBE_TITLE)
    return write_finished_job(sessions, data, documents), data


def open_map(page, base: str, job_id: str):  # noqa: F811
    page.goto(f"{base}/jobs/{job_id}")
    page.wait_for_selector('#map[data-ready="1"]', timeout=60_000)
    page.locator(MAP).scroll_into_view_if_needed()


def pixel_of(page, x: float, y: float) -> tuple[float, float]:  # noqa: F811
    """Where the data point (x, y) is on the screen, from plotly's own axes."""
    return tuple(page.evaluate(
        """([x, y]) => { const gd = document.getElementById("map"), fl = gd._fullLayout;
             const box = gd.getBoundingClientRect();
             return [box.left + fl._size.l + fl.xaxis.l2p(x), box.top + fl._size.t + fl.yaxis.l2p(y)]; }""",
        [x, y]))


def shown_labels(page) -> list[str]:  # noqa: F811
    return page.locator("#map .annotation-text").all_text_contents()


def wait_for_labels(page, expected: set[str]) -> None:  # noqa: F811
    page.wait_for_function(
        """(want) => { const have = [...document.querySelectorAll("#map .annotation-text")].map(e => e.textContent);
             return have.length === want.length && want.every(w => have.includes(w)); }""",
        arg=sorted(expected), timeout=10_000)


def test_the_map_draws_every_document_and_labels_themes_then_topics_by_zoom(  # noqa: F811
        page, live_server, map_job, sessions):  # noqa: F811
    job_id, data = map_job
    open_map(page, live_server, job_id)
    assert page.get_attribute("#map", "data-points") == str(N)
    assert page.get_attribute("#map", "data-renderer") == "webgl"
    assert page.locator("#map canvas").count() > 0  # WebGL, not one SVG node per point
    assert page.locator("#map .point").count() == 0
    with sessions() as session:
        themes = {t.label for t in jobs.themes_of(session, job_id)}
    wait_for_labels(page, themes)
    screenshot(page, "map-overview", MAP)

    # Zoomed in on topic 5: topic labels, only of topics whose centre is in view.
    meta = page.evaluate("fetch(document.getElementById('map').dataset.metaUrl).then(r => r.json())")
    centre = next(t for t in meta["topics"] if t["topic"] == 5)
    half = 6.0
    page.evaluate(
        """([x, y, h]) => Plotly.relayout("map", {"xaxis.range": [x - h, x + h], "yaxis.range": [y - h, y + h]})""",
        [centre["x"], centre["y"], half])
    ranges = page.evaluate("(() => { const l = document.getElementById('map')._fullLayout;"
                           " return [l.xaxis.range, l.yaxis.range]; })()")
    in_view = {t["label"] for t in meta["topics"]
               if min(ranges[0]) <= t["x"] <= max(ranges[0]) and min(ranges[1]) <= t["y"] <= max(ranges[1])}
    assert label_of(data, 5) in in_view and len(in_view) < N_TOPICS
    wait_for_labels(page, in_view)
    screenshot(page, "map-zoomed", MAP)
    page.click("#map-reset")
    wait_for_labels(page, themes)


def test_hovering_a_document_shows_its_topic_at_once_then_its_title(page, live_server, map_job):  # noqa: F811
    job_id, data = map_job
    open_map(page, live_server, job_id)
    px, py = pixel_of(page, float(data.x[PROBE]), float(data.y[PROBE]))
    page.mouse.move(px - 40, py - 40)
    page.mouse.move(px, py, steps=4)
    page.wait_for_selector("#map-tooltip", state="visible", timeout=20_000)
    assert page.text_content("#map-tooltip-label") == label_of(data, 2)
    page.wait_for_function("(t) => document.getElementById('map-tooltip-title').textContent === t",
                           arg=PROBE_TITLE, timeout=20_000)
    screenshot(page, "map-hover", MAP)
    px, py = pixel_of(page, float(data.x[PROBE]), float(data.y[PROBE]))  # the screenshot may have scrolled
    page.mouse.click(px, py)
    page.wait_for_selector("#map-panel", state="visible")
    page.wait_for_function("(t) => document.getElementById('map-panel-title').textContent === t",
                           arg=PROBE_TITLE, timeout=20_000)
    assert "sits by itself" in page.text_content("#map-panel-text")
    link = page.locator("#map-panel-topic")
    assert link.text_content() == label_of(data, 2)
    assert link.get_attribute("href") == f"/jobs/{job_id}/topics/2"
    screenshot(page, "map-panel", MAP)


def test_the_topic_filter_highlights_one_topic_and_the_outliers_can_be_hidden(page, live_server, map_job):  # noqa: F811
    job_id, data = map_job
    open_map(page, live_server, job_id)
    sizes = np.bincount(data.topic[data.topic >= 0], minlength=N_TOPICS)
    options = page.locator("#map-topic option").all_text_contents()
    by_size = sorted(range(N_TOPICS), key=lambda t: -sizes[t])
    assert options == ["all topics"] + [f"{label_of(data, t)} ({sizes[t]})" for t in by_size]

    smallest = by_size[-1]
    page.select_option("#map-topic", str(smallest))
    assert page.text_content("#map-status") == f"{sizes[smallest]} documents in {label_of(data, smallest)}"
    assert page.get_attribute("#map", "data-highlighted") == str(sizes[smallest])
    screenshot(page, "map-topic-filter", MAP)
    page.select_option("#map-topic", "")
    assert page.get_attribute("#map", "data-highlighted") == "0"

    visible = "(() => document.getElementById('map')._fullData.map(t => t.visible))()"
    assert page.evaluate(visible)[0] is True
    page.uncheck("#map-outliers")
    assert page.evaluate(visible)[0] is False
    screenshot(page, "map-no-outliers", MAP)
    page.check("#map-outliers")
    assert page.evaluate(visible)[0] is True


def test_search_highlights_the_matches_or_says_it_is_unavailable(page, live_server, map_job, app):  # noqa: F811
    job_id, data = map_job
    open_map(page, live_server, job_id)
    word = data.keywords[4][0]
    page.fill("#map-query", word)
    page.press("#map-query", "Enter")
    page.wait_for_function("() => !['', 'searching…'].includes(document.getElementById('map-status').textContent)")
    answer = app.test_client().get(f"/api/v1/jobs/{job_id}/search/indices", query_string={"q": word})
    if answer.status_code != 200:
        assert page.text_content("#map-status") == "search is unavailable"
        return
    body = answer.get_json()
    assert page.text_content("#map-status").startswith(f"{body['total']} documents match")
    assert page.get_attribute("#map", "data-highlighted") == str(len(body["indices"]))
    screenshot(page, "map-search", MAP)


def test_the_map_is_drawn_with_svg_where_the_browser_has_no_webgl(page, live_server, map_job):  # noqa: F811
    """An old browser, a blocklisted GPU or WebGL switched off: no WebGL context for plotly's scattergl."""
    job_id, _ = map_job
    page.add_init_script("""(() => { const getContext = HTMLCanvasElement.prototype.getContext;
        HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {
          return String(kind).includes("webgl") ? null : getContext.call(this, kind, ...rest); }; })();""")
    open_map(page, live_server, job_id)
    assert page.get_attribute("#map", "data-renderer") == "svg"
    assert page.locator("#map .no-webgl").count() == 0
    assert page.locator("#map .scatterlayer .point").count() == N
    assert page.text_content("#map-status").startswith("WebGL is unavailable")
    screenshot(page, "map-without-webgl", MAP)


def test_every_page_keeps_to_the_content_security_policy_and_its_forms_work(  # noqa: F811
        page, live_server, map_job, sessions, csp_violations):  # noqa: F811
    """The app's real headers on each page (csp_violations fails the test on any violation); the forms post their
    CSRF token, and the delete button asks first (no inline handler)."""
    job_id, data = map_job
    with transaction(sessions) as session:
        assignment = assignments.create(session, job_id, ["a new document about gardens", "and one more"])
    with transaction(sessions) as session:
        assert assignments.claim(session, assignment.id, stale_after=timedelta(minutes=1))
        assignments.finish(session, assignment.id, [3, -1], [0.8, 0.1])
    doomed = write_finished_job(sessions, clustered_map(60, 3, seed=5), name="to delete")
    word = data.keywords[4][0]
    tour = {
        "/": "New job",
        f"/jobs/{job_id}": "map job",
        f"/jobs/{job_id}/topics/3": label_of(data, 3),
        f"/jobs/{job_id}/search?q={word}": "Search its",
        f"/jobs/{job_id}/assign/{assignment.id}": "New documents in this job's topics",
        "/jobs/no-such-job": "Error 404",
    }
    for path, heading in tour.items():
        response = page.goto(live_server + path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-frame-options"] == "DENY"
        assert heading in page.text_content("h1"), path
        if path == f"/jobs/{job_id}":
            page.wait_for_selector('#map[data-ready="1"]', timeout=60_000)
            assert page.get_attribute("#map", "data-renderer") == "webgl"
            assert page.locator("style").count() == 0  # plotly took its rules from the linked files
            # plotly.css applies: the mode bar sits in the plot's corner, hidden until the plot is hovered
            assert page.evaluate("getComputedStyle(document.querySelector('#map .modebar')).position") == "absolute"
        page.wait_for_timeout(200)  # violations are reported asynchronously

    page.goto(f"{live_server}/jobs/{job_id}/topics/3")
    page.fill("form.rename input[name=label]", "Renamed in the browser")
    page.click("form.rename button:has-text('Save')")
    page.wait_for_url(f"**/jobs/{job_id}/topics/3")
    assert page.text_content("#topic-label") == "Renamed in the browser"

    page.goto(f"{live_server}/jobs/{doomed}")
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.click("button:has-text('Delete job')")
    assert questions == ["Delete this job with its documents and results?"]
    assert page.url.endswith(f"/jobs/{doomed}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Delete job')")
    page.wait_for_url(f"{live_server}/")
    with sessions() as session:
        assert jobs.get_job(session, doomed) is None and jobs.get_job(session, job_id) is not None
    assert csp_violations == []


def recorded_styles(page) -> tuple[list[str], str]:  # noqa: F811
    """What plotly.js inserts when it loads on a page without a CSP: its rules (insertRule calls, in cascade
    order: each goes in at index 0) and the text of maplibre-gl's <style> element."""
    page.set_content("<!doctype html><html><head></head><body></body></html>")
    page.evaluate("""() => { window.__rules = []; const insertRule = CSSStyleSheet.prototype.insertRule;
        CSSStyleSheet.prototype.insertRule = function (rule, index) {
          window.__rules.push([rule, index]); return insertRule.call(this, rule, index); }; }""")
    page.add_script_tag(path=str(PLOTLY_JS))
    rules = page.evaluate("() => window.__rules")
    assert {index for _, index in rules} == {0}
    maplibre = page.evaluate("(id) => document.getElementById(id).textContent", MAPLIBRE_STYLE_ID)
    return [rule for rule, _ in reversed(rules)], maplibre


def test_the_vendored_stylesheets_hold_what_plotly_would_insert(page):  # noqa: F811
    rules, maplibre = recorded_styles(page)
    vendor = PLOTLY_JS.parent
    plotly_css = (vendor / "plotly.css").read_text(encoding="utf-8").split("*/\n", 1)[1]
    assert plotly_css.splitlines() == rules, "plotly.css must hold these rules:\n" + "\n".join(rules)
    assert (vendor / "maplibre-gl.css").read_text(encoding="utf-8").split("*/\n", 1)[1] == maplibre + "\n"
    template = (ROOT / "web" / "templates" / "_map.html").read_text()
    assert f'id="{MAPLIBRE_STYLE_ID}"' in template
    assert 'id="plotly.js-style-global" class="no-inline-styles"' in template
