"""The document map in headless Chromium at 10,000 and 100,000 points: WebGL (plotly scattergl, what the map uses)
against plotly's SVG scatter, side by side in one run.

    python -m bench.map                                  # both traces at 10,000 and 100,000 points
    python -m bench.map --sizes 10000 --traces scattergl

Synthetic finished jobs (tests/map_data.py: clustered points, 12% outliers) go into a temporary SQLite database;
the app serves them on a free port and a fresh browser context opens each map. For each trace and size:

  payload     the points' bytes (12 a document) + the metadata JSON; plotly.min.js comes on top once (then cached)
  ready       navigation start to the map's data-ready (fetches, typed arrays, first render), in the page's clock;
              and of it, the time to DOMContentLoaded (the page with plotly.js, 4.8 MB, fetched and run)
  fps         requestAnimationFrame callbacks a second during a scripted 3-second zoom in and out with a pan,
              one Plotly.relayout a frame
  hover       mouse move to the tooltip visible with the topic label (median of HOVERS points), and to its text
              (the document fetched after the 80 ms debounce)

A last row per size is the ceiling of this renderer: a bare WebGL loop drawing as many points, without plotly.
SVG stops being measured past SVG_LIMIT_S seconds to first render. Headless Chromium here has no GPU: WebGL runs
in software (SwiftShader) on the machine's CPU, so every figure is a lower bound for a browser with a GPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flask import render_template_string, request
from werkzeug.serving import make_server

from shared import jobs
from shared.db import make_engine, make_session_factory, migrate
from shared.settings import Settings
from tests.browser import launch_chromium
from tests.map_data import clustered_map, write_finished_job
from web.maps import PLOTLY_JS

PAGE = '{% extends "base.html" %}{% block content %}{% include "_map.html" %}{% endblock %}'
SVG_LIMIT_S = 60.0
READY_LIMIT_S = 180.0
FPS_SECONDS = 3.0
HOVERS = 9
VIEWPORT = {"width": 1400, "height": 1000}

# One Plotly.relayout a frame for ``seconds``: zoom to 40% of the view and back while panning; frames a second.
FPS_SCRIPT = """async (seconds) => {
  const gd = document.getElementById("map"), fl = gd._fullLayout;
  const x0 = fl.xaxis.range.slice(), y0 = fl.yaxis.range.slice();
  const cx = (x0[0] + x0[1]) / 2, cy = (y0[0] + y0[1]) / 2, wx = x0[1] - x0[0], wy = y0[1] - y0[0];
  let frames = 0;
  const start = performance.now();
  await new Promise((resolve) => {
    function step(now) {
      const t = (now - start) / 1000;
      if (t >= seconds) { resolve(); return; }
      frames++;
      const zoom = 1 - 0.6 * Math.sin(Math.PI * t / seconds), pan = 0.15 * Math.sin(4 * Math.PI * t / seconds);
      const x = cx + pan * wx, y = cy + pan * wy;
      Plotly.relayout(gd, {"xaxis.range": [x - zoom * wx / 2, x + zoom * wx / 2],
                           "yaxis.range": [y - zoom * wy / 2, y + zoom * wy / 2]});
      requestAnimationFrame(step);
    }
    requestAnimationFrame(step);
  });
  const seconds_taken = (performance.now() - start) / 1000;
  await Plotly.relayout(gd, {"xaxis.range": x0, "yaxis.range": y0});
  return frames / seconds_taken;
}"""

# Times from the mouse event to the tooltip shown (label) and to its text filled in, in the page's clock.
HOVER_PROBE = """() => {
  const tooltip = document.getElementById("map-tooltip"), title = document.getElementById("map-tooltip-title");
  window.__hover = {move: null, shown: null, text: null};
  document.addEventListener("mousemove", (e) => { window.__hover.move = e.timeStamp; }, true);
  new MutationObserver(() => {
    if (!tooltip.hidden && window.__hover.shown === null) window.__hover.shown = performance.now();
  })
    .observe(tooltip, {attributes: true, attributeFilter: ["hidden"]});
  new MutationObserver(() => {
    if (title.dataset.index && window.__hover.text === null) window.__hover.text = performance.now();
  })
    .observe(title, {attributes: true, attributeFilter: ["data-index"]});
}"""

# The ceiling of this renderer: the simplest WebGL loop drawing ``n`` 3-pixel round points on a canvas the size of
# the map's, frames a second (no plotly, no page around it).
RAW_WEBGL_SCRIPT = """async ([n, width, height, seconds]) => {
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  document.body.append(canvas);
  const gl = canvas.getContext("webgl");
  function shader(kind, source) {
    const s = gl.createShader(kind);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    return s;
  }
  const program = gl.createProgram();
  gl.attachShader(program, shader(gl.VERTEX_SHADER, "attribute vec2 p; uniform vec3 v; void main() {" +
    " gl_Position = vec4((p - v.xy) * v.z, 0.0, 1.0); gl_PointSize = 3.0; }"));
  gl.attachShader(program, shader(gl.FRAGMENT_SHADER, "precision mediump float; void main() {" +
    " vec2 d = gl_PointCoord - 0.5; if (dot(d, d) > 0.25) discard; gl_FragColor = vec4(0.3, 0.5, 0.7, 0.85); }"));
  gl.linkProgram(program); gl.useProgram(program);
  const points = new Float32Array(2 * n).map(() => Math.random() * 2 - 1);
  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer()); gl.bufferData(gl.ARRAY_BUFFER, points, gl.STATIC_DRAW);
  gl.enableVertexAttribArray(0); gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
  gl.enable(gl.BLEND); gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
  const view = gl.getUniformLocation(program, "v");
  let frames = 0;
  const start = performance.now();
  await new Promise((resolve) => {
    function step(now) {
      const t = (now - start) / 1000;
      if (t >= seconds) { resolve(); return; }
      frames++;
      gl.clearColor(1, 1, 1, 1); gl.clear(gl.COLOR_BUFFER_BIT);
      const zoom = 1 - 0.6 * Math.sin(Math.PI * t / seconds), pan = 0.15 * Math.sin(4 * Math.PI * t / seconds);
      gl.uniform3f(view, pan, 0, 1 / zoom);
      gl.drawArrays(gl.POINTS, 0, n);
      requestAnimationFrame(step);
    }
    requestAnimationFrame(step);
  });
  return frames / ((performance.now() - start) / 1000);
}"""

PIXEL = """([x, y]) => {
  const gd = document.getElementById("map"), fl = gd._fullLayout, box = gd.getBoundingClientRect();
  return [box.left + fl._size.l + fl.xaxis.l2p(x), box.top + fl._size.t + fl.yaxis.l2p(y)]; }"""


@dataclass
class Row:
    trace: str
    n: int
    payload: int | None
    ready_ms: float | None = None
    scripts_ms: float | None = None  # of ready: the page with plotly.js loaded and run (DOMContentLoaded)
    fps: float | None = None
    hover_ms: float | None = None
    hover_text_ms: float | None = None
    note: str = ""


def cpu() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    return f"{model}, {os.cpu_count()} cores"


def build_app(settings: Settings):
    from web import create_app

    app = create_app(settings)
    sessions = app.extensions["topicq"]["sessions"]

    def bench_page(job_id: str):
        with sessions() as session:
            return render_template_string(PAGE, job=jobs.get_job(session, job_id), map_trace=request.args["trace"])

    app.add_url_rule("/bench/map/<job_id>", "bench_map", bench_page)
    return app


def serve(app) -> tuple[str, object]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def payload_bytes(app, job_id: str) -> int:
    client = app.test_client()
    meta = client.get(f"/api/v1/jobs/{job_id}/map")
    return len(meta.get_data()) + len(client.get(meta.get_json()["points"]).get_data())


def measure(browser, base: str, job_id: str, data, trace: str, row: Row) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    limit = SVG_LIMIT_S if trace == "scatter" else READY_LIMIT_S
    try:
        page.goto(f"{base}/bench/map/{job_id}?trace={trace}")
        try:
            page.wait_for_selector('#map[data-ready="1"]', timeout=limit * 1000)
        except Exception:
            row.note = f"no first render within {limit:.0f} s"
            return
        row.ready_ms = float(page.get_attribute("#map", "data-ready-ms"))
        row.scripts_ms = page.evaluate('performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd')
        page.locator("#map").scroll_into_view_if_needed()
        row.fps = page.evaluate(FPS_SCRIPT, FPS_SECONDS)
        page.evaluate(HOVER_PROBE)
        shown, texts = [], []
        members = [i for i in range(0, data.n, max(1, data.n // 997)) if data.topic[i] >= 0][:HOVERS]
        for index in members:
            px, py = page.evaluate(PIXEL, [float(data.x[index]), float(data.y[index])])
            page.mouse.move(5, 5)  # off the plot: the tooltip goes
            page.wait_for_selector("#map-tooltip", state="hidden", timeout=30_000)
            page.evaluate("() => { window.__hover = {move: null, shown: null, text: null}; }")
            page.mouse.move(px, py)
            page.wait_for_function("() => window.__hover.text !== null", timeout=30_000)
            hover = page.evaluate("() => window.__hover")
            shown.append(hover["shown"] - hover["move"])
            texts.append(hover["text"] - hover["move"])
        row.hover_ms, row.hover_text_ms = statistics.median(shown), statistics.median(texts)
    finally:
        context.close()


def raw_webgl(browser, n: int) -> Row:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        fps = context.new_page().evaluate(RAW_WEBGL_SCRIPT, [n, 1350, 640, FPS_SECONDS])
    finally:
        context.close()
    return Row("raw WebGL points (ceiling)", n, None, fps=fps, note="no plotly: what this renderer can draw at all")


def table(rows: list[Row]) -> str:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    lines = ["| trace | points | payload (bytes) | ready (ms) | of which page + plotly.js (ms) | fps during zoom/pan "
             "| hover: tooltip (ms) | hover: text (ms) | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.trace} | {r.n:,} | {fmt(r.payload, ',')} | {fmt(r.ready_ms, ',.0f')} | "
                     f"{fmt(r.scripts_ms, ',.0f')} | {fmt(r.fps, '.1f')} | "
                     f"{fmt(r.hover_ms, '.0f')} | {fmt(r.hover_text_ms, '.0f')} | {r.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--traces", nargs="+", choices=["scattergl", "scatter"], default=["scattergl", "scatter"])
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="topicq-bench-map-") as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/topicq.db",
                            redis_url="redis://127.0.0.1:1/0", _env_file=None)
        migrate(settings)
        sessions = make_session_factory(make_engine(settings))
        made = {}
        for n in args.sizes:
            started = time.perf_counter()
            data = clustered_map(n, n_topics=max(8, int(n ** 0.5 / 5)), seed=n)
            made[n] = (write_finished_job(sessions, data, name=f"bench map {n}"), data)
            print(f"wrote a job of {n:,} documents in {time.perf_counter() - started:.1f} s", flush=True)
        app = build_app(settings)
        base, server = serve(app)
        rows = []
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            renderer = browser.new_page().evaluate(
                """() => { const gl = document.createElement("canvas").getContext("webgl");
                     const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
                     return info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : String(!!gl); }""")
            version = browser.version
            for n in args.sizes:
                job_id, data = made[n]
                for trace in args.traces:
                    row = Row(trace, n, payload_bytes(app, job_id))
                    started = time.perf_counter()
                    measure(browser, base, job_id, data, trace, row)
                    print(f"{trace} at {n:,} points: {time.perf_counter() - started:.0f} s", flush=True)
                    rows.append(row)
                rows.append(raw_webgl(browser, n))
            browser.close()
        server.shutdown()
    plotly_bytes = PLOTLY_JS.stat().st_size
    print()
    print(f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(f"CPU: {cpu()}; Chromium {version} headless, WebGL renderer: {renderer}")
    print("WebGL is rendered in software (SwiftShader) on this CPU: a lower bound for a browser with a GPU.")
    print(f"plotly.min.js: {plotly_bytes:,} bytes, once (then cached for a year)")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
