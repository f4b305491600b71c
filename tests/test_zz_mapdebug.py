from tests.test_map_browser import *  # noqa
from tests.test_map_browser import open_map, pixel_of, PROBE

def test_debug(page, live_server, map_job):  # noqa: F811
    job_id, data = map_job
    page.on("response", lambda r: print("RESP", r.status, r.url) if r.status >= 400 else None)
    open_map(page, live_server, job_id)
    px, py = pixel_of(page, float(data.x[PROBE]), float(data.y[PROBE]))
    page.mouse.move(px - 40, py - 40)
    page.mouse.move(px, py, steps=4)
    page.wait_for_selector("#map-tooltip", state="visible", timeout=5_000)
    page.wait_for_timeout(500)
    print("tooltip", page.text_content("#map-tooltip"))
    page.mouse.click(px, py)
    page.wait_for_timeout(1500)
    print("panel", page.get_attribute("#map-panel", "data-index"), page.text_content("#map-panel-title"), page.text_content("#map-panel-text")[:100])
    print(px, py, page.evaluate("document.documentElement.scrollTop"))
