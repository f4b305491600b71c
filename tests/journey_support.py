"""What the browser journey (test_journey.py) does in a page: watch the progress bar, find documents on the map's
screen, hover them, zoom the map with the mouse wheel, and read its labels."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser import screenshot

_PAGE_STATE = """() => {
  const bar = document.getElementById("bar");
  const failed = document.querySelector("p.error");
  return {bar: bar ? bar.value : null, results: !!document.querySelector("table.topics"),
          failed: failed ? failed.textContent : null};
}"""

# Client (viewport) coordinates of data points, and the plot area, from plotly's own axes.
_PIXELS = """([xs, ys]) => {
  const gd = document.getElementById("map"), fl = gd._fullLayout, box = gd.getBoundingClientRect();
  const left = box.left + fl._size.l, top = box.top + fl._size.t;
  return {points: xs.map((x, i) => [left + fl.xaxis.l2p(x), top + fl.yaxis.l2p(ys[i])]),
          area: [left, top, left + fl._size.w, top + fl._size.h]};
}"""


@dataclass
class Progress:
    values: list[float]  # the bar's value at each sample, in order
    seconds: float  # from the first sample until the page showed the results
    screenshot_at: float | None  # the bar's value when the screenshot was taken


def watch_progress(page: Page, timeout: float, every: float = 0.25, shot: str = "journey-progress",
                   shot_from: float = 0.3) -> Progress:
    """Samples ``#bar`` every ``every`` seconds until the page (reloaded by progress.js) shows the results table;
    takes one screenshot once the bar is at ``shot_from`` or more, below 1 (past the first stage, so it shows
    several). Raises AssertionError if the page says the job failed."""
    values: list[float] = []
    started = time.monotonic()
    shot_at = None
    while time.monotonic() - started < timeout:
        try:
            state = page.evaluate(_PAGE_STATE)
        except PlaywrightError:  # the page is reloading into its results
            time.sleep(every / 2)
            continue
        if state["results"]:
            return Progress(values, time.monotonic() - started, shot_at)
        assert state["failed"] is None, f"the job page says: {state['failed']}"
        if state["bar"] is not None:
            values.append(float(state["bar"]))
            if shot_at is None and shot_from <= values[-1] < 1:
                try:
                    screenshot(page, shot)
                    shot_at = values[-1]
                except PlaywrightError:
                    pass
        time.sleep(every)
    raise AssertionError(f"no results after {timeout:.0f} s; the bar went {values[:3]} ... {values[-3:]}")


@dataclass
class Screen:
    points: np.ndarray  # (n, 2) client x, y of each document, in document order
    area: tuple[float, float, float, float]  # the plot area: left, top, right, bottom

    def isolated(self, candidates: list[int], gap: float) -> list[int]:
        """Of the documents ``candidates``, those inside the plot area with no other document within ``gap``
        pixels, loneliest first."""
        left, top, right, bottom = self.area
        distance = np.linalg.norm(self.points[:, None, :] - self.points[None, :, :], axis=-1)
        np.fill_diagonal(distance, np.inf)
        nearest = distance.min(axis=1)
        inside = [i for i in candidates
                  if left + gap < self.points[i, 0] < right - gap and top + gap < self.points[i, 1] < bottom - gap]
        return sorted((i for i in inside if nearest[i] > gap), key=lambda i: -nearest[i])


def screen(page: Page, documents: list[dict]) -> Screen:
    """Where each document of ``/api/v1/jobs/<id>/documents`` (dicts with ``x``, ``y``) is on the screen now."""
    found = page.evaluate(_PIXELS, [[d["x"] for d in documents], [d["y"] for d in documents]])
    return Screen(np.array(found["points"], dtype=np.float64), tuple(found["area"]))


@dataclass
class Tooltip:
    label: str  # the topic label, shown at once
    title: str  # the document's title, once it has arrived
    index: str  # the index of the document the title belongs to


def hover(page: Page, x: float, y: float, index: int) -> Tooltip:
    """Moves the mouse onto document ``index``'s point at client (x, y) as a user would, and reads the map's
    tooltip once it shows that document's title (or after 10 s, whatever it shows then)."""
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=5)
    page.wait_for_selector("#map-tooltip", state="visible", timeout=20_000)
    try:
        page.wait_for_function("(i) => document.getElementById('map-tooltip-title').dataset.index === i",
                               arg=str(index), timeout=10_000)
    except PlaywrightTimeoutError:
        pass  # the caller's assertions say what the tooltip shows instead
    return Tooltip(page.text_content("#map-tooltip-label"), page.text_content("#map-tooltip-title"),
                   page.get_attribute("#map-tooltip-title", "data-index"))


def x_share(page: Page) -> float:
    """How much of the map's x extent (its bounds, as map.js has them) the visible x range spans."""
    return page.evaluate("""async () => {
      const gd = document.getElementById("map"), range = gd._fullLayout.xaxis.range;
      const meta = await (await fetch(gd.dataset.metaUrl)).json();
      return Math.abs(range[1] - range[0]) / (meta.bounds.x[1] - meta.bounds.x[0]);
    }""")


def wheel_zoom(page: Page, x: float, y: float, share: float, max_turns: int = 40) -> float:
    """Turns the mouse wheel over client (x, y), one notch at a time, until the visible x range is below
    ``share`` of the map's; returns the share reached."""
    page.mouse.move(x, y)
    reached = x_share(page)
    for _ in range(max_turns):
        if reached < share:
            break
        page.mouse.wheel(0, -120)
        page.wait_for_timeout(400)  # plotly applies a wheel zoom to the axes' ranges after a short pause
        reached = x_share(page)
    return reached


def map_labels(page: Page) -> list[str]:
    return page.locator("#map .annotation-text").all_text_contents()
