"""The static map of a job (PNG for slides, SVG for papers) on synthetic UMAP-like coordinates."""

import io
import itertools
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from matplotlib.image import imread

from worker.pipeline.static_map import figure_size, label_boxes, point_style, render_map, wrap_label

SVG = "{http://www.w3.org/2000/svg}"
SMALL = {"width_inches": 8, "dpi": 60}  # 480 pixels across: fast, and large enough for 12 labels
CLOSE = (0, 1, 2)  # topics whose clouds share nearly one centre


@pytest.fixture(scope="module")
def corpus():
    """12 Gaussian blobs of different sizes, three of them centred within half a unit of each other, 15 % outliers
    spread over the whole map, and labels some of which are long; shapes (n, 2), (n,)."""
    rng = np.random.default_rng(7)
    centres = np.array([[0, 0], [0.4, 0.2], [-0.3, 0.35], [6, 5], [-6, 5], [6, -5], [-6, -5], [0, 7], [0, -7],
                        [8, 0], [-8, 0], [3, 2.5]], dtype=np.float64)
    sizes = [400, 380, 360, 300, 280, 260, 240, 220, 200, 180, 160, 140]
    coords = np.vstack([c + rng.normal(scale=0.9, size=(n, 2)) for c, n in zip(centres, sizes)])
    topics = np.repeat(np.arange(12), sizes)
    outliers = rng.uniform(-10, 10, size=(560, 2))
    coords = np.vstack([coords, outliers]).astype(np.float32)
    topics = np.concatenate([topics, np.full(len(outliers), -1)]).astype(np.int32)
    labels = {t: f"Topic {t} words" for t in range(12)}
    labels[0] = "Customer complaints about delayed parcel deliveries and refunds"
    labels[1] = "Refund requests for damaged goods arriving in the post"
    labels[2] = "Questions about tracking numbers"
    labels[7] = "A rather long label that goes on for far more than three lines of twenty-five characters each"
    labels[-1] = "Outliers"
    return coords, topics, labels


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_texts(svg: bytes) -> dict[int, str]:
    """Each label's text in the SVG by topic id, its lines joined by spaces."""
    root = ET.fromstring(svg)
    return {int(g.get("id").removeprefix("topic-label-")): " ".join(t.text for t in g.iter(f"{SVG}text"))
            for g in root.iter(f"{SVG}g") if g.get("id", "").startswith("topic-label-")}


def test_png_decodes_with_the_figures_pixel_size(corpus):
    coords, topics, labels = corpus
    image = imread(io.BytesIO(render_map(coords, topics, labels, title="Support tickets", **SMALL)), format="png")

    width, height = figure_size(coords, 8, 60)
    assert image.shape == (round(height * 60), 480, 4)
    assert 9 / 16 * 480 <= image.shape[0] <= 480
    coloured = np.ptp(image[..., :3], axis=2) > 0.15  # not white, not grey
    assert 0.05 < coloured.mean() < 0.8


def test_svg_holds_every_label_as_text_and_the_points_as_one_image(corpus):
    coords, topics, labels = corpus
    svg = render_map(coords, topics, labels, fmt="svg", title="Support tickets", **SMALL)
    root = ET.fromstring(svg)

    texts = label_texts(svg)
    assert sorted(texts) == list(range(12))
    assert all(texts[t] == wrap_label(labels[t]).replace("\n", " ") for t in texts)
    long_lines = [t.text for g in root.iter(f"{SVG}g") if g.get("id") == "topic-label-7" for t in g.iter(f"{SVG}text")]
    assert len(long_lines) == 3 and all(len(line) <= 27 for line in long_lines) and long_lines[-1].endswith("…")
    assert "Support tickets" in "".join(root.itertext())
    images = list(root.iter(f"{SVG}image"))
    assert len(images) == 1 and images[0].get("{http://www.w3.org/1999/xlink}href").startswith("data:image/png")
    assert all("paint-order: stroke" in t.get("style") for g in root.iter(f"{SVG}g")
               if g.get("id", "").startswith("topic-label-") for t in g.iter(f"{SVG}text"))
    assert len(svg) < 1_500_000


def test_labels_never_overlap_and_stay_inside_the_figure(corpus):
    coords, topics, labels = corpus
    placed = label_boxes(coords, topics, labels, title="Support tickets", **SMALL)
    width, height = (round(v * 60) for v in figure_size(coords, 8, 60))

    assert sorted(placed) == list(range(12)), "every topic is large enough for its label"
    anchors = {t: np.array(placed[t].anchor) for t in CLOSE}
    widths = {t: placed[t].box[2] - placed[t].box[0] for t in CLOSE}
    assert all(np.abs(anchors[a] - anchors[b]).max() < min(widths[a], widths[b]) / 2
               for a, b in itertools.combinations(CLOSE, 2)), "labels at their centres would overlap"
    for (_, a), (_, b) in itertools.combinations(placed.items(), 2):
        assert not overlaps(a.box, b.box)
    for placement in placed.values():
        x0, y0, x1, y1 = placement.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def test_a_label_moved_off_its_centre_gets_a_leader_line(corpus):
    coords, topics, labels = corpus
    placed = label_boxes(coords, topics, labels, **SMALL)
    root = ET.fromstring(render_map(coords, topics, labels, fmt="svg", **SMALL))
    leaders = {int(g.get("id").removeprefix("topic-leader-")) for g in root.iter(f"{SVG}g")
               if g.get("id", "").startswith("topic-leader-")}

    def centre_outside(p):
        x0, y0, x1, y1 = p.box
        return not (x0 <= p.anchor[0] <= x1 and y0 <= p.anchor[1] <= y1)

    moved = {t for t, p in placed.items() if centre_outside(p)}
    assert moved, "three labels cannot all stay on one centre"
    assert moved <= leaders <= set(placed)
    assert len(leaders) < len(placed), "labels that kept their place need no line"


def test_outliers_and_topics_without_documents_get_no_label(corpus):
    coords, topics, labels = corpus
    texts = label_texts(render_map(coords, topics, {**labels, 40: "A topic with no documents"}, fmt="svg", **SMALL))

    assert -1 not in texts and 40 not in texts
    assert not {"Outliers", "A topic with no documents"} & set(texts.values())


def test_only_the_largest_topics_are_labelled(corpus):
    coords, topics, labels = corpus
    assert sorted(label_boxes(coords, topics, labels, max_labels=4, **SMALL)) == [0, 1, 2, 3]


@pytest.mark.parametrize("case", ["all outliers", "no documents", "one topic"])
def test_small_and_empty_jobs_still_render(case):
    rng = np.random.default_rng(1)
    coords = rng.normal(size=(0 if case == "no documents" else 150, 2)).astype(np.float32)
    topics = np.full(len(coords), 0 if case == "one topic" else -1, dtype=np.int32)
    labels = {0: "The only topic"} if case == "one topic" else {}

    image = imread(io.BytesIO(render_map(coords, topics, labels, **SMALL)), format="png")
    texts = label_texts(render_map(coords, topics, labels, fmt="svg", **SMALL))

    assert image.shape[1] == 480
    assert texts == ({0: "The only topic"} if case == "one topic" else {})


def test_the_same_input_gives_the_same_bytes_also_from_threads(corpus):
    coords, topics, labels = corpus
    args = [(fmt,) for fmt in ("png", "svg", "png", "svg")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(lambda a: render_map(coords, topics, labels, fmt=a[0], **SMALL), args))

    assert outputs[0] == outputs[2] == render_map(coords, topics, labels, fmt="png", **SMALL)
    assert outputs[1] == outputs[3]


def test_dots_are_large_and_opaque_for_few_documents_and_fine_for_many():
    area = 860 * 640  # points², a 12-inch map
    few, many = point_style(100, area), point_style(600_000, area)
    assert few[0] > 10 * many[0] and few[1] > 2 * many[1]
    assert many[0] > 0 and many[1] >= 0.2


def test_unknown_format_is_refused(corpus):
    coords, topics, labels = corpus
    with pytest.raises(ValueError, match="fmt"):
        render_map(coords, topics, labels, fmt="jpeg")
