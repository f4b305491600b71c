"""A static map of a job for slides (PNG) and papers (SVG): every document a dot at its 2-D UMAP position,
coloured by topic (outliers light grey, smaller, underneath), and the largest topics' labels at their centres,
moved apart by adjustText where they would overlap, with a thin leader line back to a centre they left.

Pure: arrays in, bytes out. matplotlib through its object API and the Agg canvas only (no pyplot state)."""

from __future__ import annotations

import io
import textwrap
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import NamedTuple

import matplotlib as mpl
import numpy as np
from adjustText import adjust_text
from matplotlib import colormaps, patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Text

from shared.sanitize import one_line

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels, origin at the figure's bottom left


class Placement(NamedTuple):
    box: Box  # the label's text
    anchor: tuple[float, float]  # the point it labels (display pixels); a leader line joins them if it is outside


# tab20 with its dark shades first and its two greys left out (grey is for outliers): 18 colours.
_TAB20 = colormaps["tab20"].colors
PALETTE = np.array([c for c in _TAB20[0::2] + _TAB20[1::2] if len(set(c)) > 1], dtype=np.float64)  # (18, 3)
OUTLIER_COLOUR = (0.80, 0.80, 0.80)

_RC = {
    "svg.fonttype": "none",  # labels stay <text>: searchable and editable in the SVG
    "svg.hashsalt": "topicq",  # stable element ids, so the same input gives the same SVG
    # DejaVu Sans (matplotlib's own) lays the labels out; an SVG viewer without it falls back to a narrower sans.
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial", "Liberation Sans"],
}
_SVG = "http://www.w3.org/2000/svg"
_SVG_PREFIXES = {"": _SVG, "xlink": "http://www.w3.org/1999/xlink", "cc": "http://creativecommons.org/ns#",
                 "dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}
for _prefix, _uri in _SVG_PREFIXES.items():
    ET.register_namespace(_prefix, _uri)  # the namespaces matplotlib writes, kept as it writes them
_LABEL_GID = "topic-label-"
_LEADER_GID = "topic-leader-"
_MARGIN = 0.01  # of the figure's width and height, on each side
_TITLE_INCHES = 0.45
_HALO_POINTS = 4.5  # at a width of 12 inches, like the fonts; half of it shows outside the glyphs
_LINE_CHARS = 25
_MAX_LINES = 3

# rcParams are process-global and matplotlib is not thread-safe: one render at a time per process.
_RENDER_LOCK = threading.Lock()


def figure_size(coords: np.ndarray, width_inches: float = 12, dpi: int = 200) -> tuple[float, float]:
    """(width, height) in inches: the height follows the data's aspect ratio, kept between 9:16 and 1:1 of the
    width, and rounded to whole pixels at ``dpi``."""
    spans = np.ptp(coords, axis=0) if len(coords) else np.zeros(2)
    ratio = spans[1] / spans[0] if spans[0] > 0 else (1.0 if spans[1] > 0 else 0.75)
    height = width_inches * float(np.clip(ratio, 9 / 16, 1.0))
    return float(width_inches), round(height * dpi) / dpi


def point_style(n_points: int, area_pt2: float) -> tuple[float, float]:
    """Marker area (points²) and opacity for ``n_points`` dots in an axes of ``area_pt2`` points²: large and
    nearly opaque for a hundred documents, fine and translucent for hundreds of thousands."""
    n = max(n_points, 1)
    size = float(np.clip(0.2 * area_pt2 / n, 0.5, 30.0))
    alpha = float(np.clip((2000 / n) ** 0.2, 0.3, 0.9))
    return size, alpha


def topic_colour(topic: int) -> tuple[float, float, float]:
    return tuple(PALETTE[topic % len(PALETTE)]) if topic >= 0 else OUTLIER_COLOUR


def wrap_label(label: str) -> str:
    """The label on lines of about 25 characters, at most three (the rest shortened to an ellipsis), without
    control characters (which XML, and so the SVG, cannot hold)."""
    return textwrap.fill(one_line(label), width=_LINE_CHARS, max_lines=_MAX_LINES, placeholder=" …",
                         break_on_hyphens=False)


def labelled_topics(doc_topics: np.ndarray, labels: Mapping[int, str], max_labels: int) -> list[int]:
    """The ids of the ``max_labels`` largest topics that have documents and a non-blank label, largest first."""
    ids, counts = np.unique(doc_topics[doc_topics >= 0], return_counts=True)
    order = np.lexsort((ids, -counts))
    named = [int(ids[i]) for i in order if str(labels.get(int(ids[i])) or "").strip()]
    return named[:max(max_labels, 0)]


def anchor(points: np.ndarray) -> np.ndarray:
    """Where a topic's label goes, shape (2,): the document nearest the median of ``points`` (m, 2), so that
    the label sits on the topic's own dots even when its cloud is curved."""
    median = np.median(points, axis=0)
    return points[np.argmin(((points - median) ** 2).sum(axis=1))]


def label_boxes(coords: np.ndarray, doc_topics: np.ndarray, labels: Mapping[int, str], *, title: str | None = None,
                max_labels: int = 30, width_inches: float = 12, dpi: int = 200) -> dict[int, Placement]:
    """Where each drawn label ended up, by topic id, as ``render_map`` lays it out with the same arguments (the
    PNG at ``dpi``; the SVG is the same layout in points)."""
    with _RENDER_LOCK, mpl.rc_context(_RC):
        figure, placed = _compose(coords, doc_topics, labels, title, max_labels, width_inches, dpi)
        renderer = figure.canvas.get_renderer()
        return {topic: Placement(tuple(float(v) for v in text.get_window_extent(renderer).extents),
                                 tuple(float(v) for v in text.axes.transData.transform(point)))
                for topic, (text, point) in placed.items()}


def render_map(coords: np.ndarray, doc_topics: np.ndarray, labels: Mapping[int, str], *, fmt: str = "png",
               title: str | None = None, max_labels: int = 30, width_inches: float = 12, dpi: int = 200) -> bytes:
    """The map as PNG or SVG bytes.

    ``coords`` (n, 2) float: the documents' 2-D positions; ``doc_topics`` (n,) int: each document's topic, -1 for
    outliers; ``labels``: topic id -> label (topics without documents or without a label get no label). The PNG
    is ``figure_size(coords, width_inches, dpi)`` times ``dpi`` pixels; in the SVG the dots are one embedded raster
    image (at ``dpi``) and the title and labels are text. The same input gives the same bytes."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be 'png' or 'svg', not {fmt!r}")
    with _RENDER_LOCK, mpl.rc_context(_RC):
        figure, placed = _compose(coords, doc_topics, labels, title, max_labels, width_inches, dpi)
        buffer = io.BytesIO()
        if fmt == "png":
            figure.savefig(buffer, format="png", dpi=dpi, metadata={"Title": title} if title else None)
            return buffer.getvalue()
        # A path effect would turn SVG text into outlines; the halo is added to the <text> elements instead.
        for text, _ in placed.values():
            text.set_path_effects([])
        figure.savefig(buffer, format="svg", dpi=dpi, metadata={"Date": None, **({"Title": title} if title else {})})
        return _add_halos(buffer.getvalue(), _HALO_POINTS * width_inches / 12)


def _compose(coords, doc_topics, labels, title, max_labels, width_inches, dpi
             ) -> tuple[Figure, dict[int, tuple[Text, np.ndarray]]]:
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    doc_topics = np.asarray(doc_topics).astype(np.int64).reshape(-1)
    if len(coords) != len(doc_topics):
        raise ValueError(f"{len(coords)} coordinates but {len(doc_topics)} topic assignments")
    width, height = figure_size(coords, width_inches, dpi)
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    top = 1 - _MARGIN - (_TITLE_INCHES / height if title else 0)
    ax = figure.add_axes((_MARGIN, _MARGIN, 1 - 2 * _MARGIN, top - _MARGIN))
    ax.set_axis_off()
    if title:
        figure.text(_MARGIN, 1 - _MARGIN, title, ha="left", va="top", fontsize=14 * width_inches / 12,
                    fontweight="bold", color="#222222", parse_math=False)
    _set_equal_limits(ax, coords)
    _draw_points(ax, coords, doc_topics)
    return figure, _draw_labels(ax, coords, doc_topics, labels, max_labels, width_inches / 12)


def _set_equal_limits(ax: Axes, coords: np.ndarray) -> None:
    """Limits with one data unit the same length across and up (UMAP distances mean the same in both
    directions), the data centred with a little room around it."""
    box = ax.get_window_extent()
    if len(coords):
        low, high = coords.min(axis=0), coords.max(axis=0)
    else:
        low, high = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    centre, span = (low + high) / 2, np.maximum(high - low, 1e-6) * 1.04
    per_pixel = max(span[0] / box.width, span[1] / box.height)
    ax.set_xlim(centre[0] - per_pixel * box.width / 2, centre[0] + per_pixel * box.width / 2)
    ax.set_ylim(centre[1] - per_pixel * box.height / 2, centre[1] + per_pixel * box.height / 2)


def _draw_points(ax: Axes, coords: np.ndarray, doc_topics: np.ndarray) -> None:
    """Outliers first, then one scatter per topic from the largest to the smallest, so small topics stay
    visible on top; everything below zorder 2 becomes one raster image in an SVG."""
    box = ax.get_window_extent()
    dpi = ax.get_figure(root=True).dpi
    area_pt2 = (box.width * 72 / dpi) * (box.height * 72 / dpi)
    size, alpha = point_style(len(coords), area_pt2)
    ax.set_rasterization_zorder(2)
    outliers = doc_topics < 0
    if outliers.any():
        ax.scatter(coords[outliers, 0], coords[outliers, 1], s=size * 0.5, color=OUTLIER_COLOUR, alpha=alpha,
                   marker="o", linewidths=0, rasterized=True, zorder=0)
    ids, counts = np.unique(doc_topics[~outliers], return_counts=True)
    for topic in ids[np.lexsort((ids, -counts))]:
        members = doc_topics == topic
        ax.scatter(coords[members, 0], coords[members, 1], s=size, color=topic_colour(int(topic)), alpha=alpha,
                   marker="o", linewidths=0, rasterized=True, zorder=1)


def _draw_labels(ax: Axes, coords: np.ndarray, doc_topics: np.ndarray, labels: Mapping[int, str], max_labels: int,
                 scale: float) -> dict[int, tuple[Text, np.ndarray]]:
    """The labels drawn, by topic id, each with the point it labels (data coordinates, shape (2,))."""
    topics = labelled_topics(doc_topics, labels, max_labels)
    if not topics:
        return {}
    sizes = np.array([(doc_topics == t).sum() for t in topics], dtype=np.float64)
    anchors = np.array([anchor(coords[doc_topics == t]) for t in topics])  # (k, 2)
    texts = [
        ax.text(x, y, wrap_label(str(labels[t])), ha="center", va="center", zorder=4, gid=f"{_LABEL_GID}{t}",
                parse_math=False,  # a label is text: "$x^$" is no formula (nor an error)
                fontsize=(8 + 5 * np.sqrt(n / sizes[0])) * scale, color=_ink(t), linespacing=1.1)
        for t, n, (x, y) in zip(topics, sizes, anchors)
    ]
    # iter_lim instead of adjustText's default one-second time limit: the layout must not depend on CPU speed.
    adjust_text(texts, ax=ax, target_x=anchors[:, 0], target_y=anchors[:, 1], avoid_self=False,
                prevent_crossings=False, expand=(1.08, 1.25), force_text=(0.2, 0.4), ensure_inside_axes=True,
                time_lim=None, iter_lim=400)
    kept = _drop_overlaps(ax, texts)
    halo = [patheffects.withStroke(linewidth=_HALO_POINTS * scale, foreground="white")]
    line_halo = [patheffects.withStroke(linewidth=2.5 * scale, foreground="white")]
    renderer = ax.get_figure(root=True).canvas.get_renderer()
    placed = {}
    for topic, text, point in zip(topics, texts, anchors):
        if text not in kept:
            continue
        text.set_path_effects(halo)  # only now: adjustText draws the figure once, and outlines cost time
        placed[topic] = text, point
        if not text.get_window_extent(renderer).expanded(1.05, 1.1).contains(*ax.transData.transform(point)):
            ax.add_patch(FancyArrowPatch(posA=point, posB=text.get_position(), patchB=text, arrowstyle="-",
                                         color=_ink(topic), linewidth=0.8 * scale, shrinkA=0, shrinkB=1, zorder=3,
                                         path_effects=line_halo, gid=f"{_LEADER_GID}{topic}"))
    return placed


def _drop_overlaps(ax: Axes, texts: list[Text]) -> list[Text]:
    """The labels (largest topic first) that overlap no larger topic's label and lie inside the axes; adjustText
    usually leaves none over, and one it could not place is left out rather than drawn over another."""
    renderer = ax.get_figure(root=True).canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    kept, boxes = [], []
    for text in texts:
        box = text.get_window_extent(renderer)
        fits = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
        if fits and not any(box.overlaps(other) for other in boxes):
            kept.append(text)
            boxes.append(box)
        else:
            text.remove()
    return kept


def _ink(topic: int) -> tuple[float, float, float]:
    """A topic's colour darkened for text on a white halo."""
    return tuple(0.55 * np.asarray(topic_colour(topic)))


def _add_halos(svg: bytes, width: float) -> bytes:
    """The SVG with a white outline behind each label's text (``paint-order: stroke``), the vector counterpart of
    the PNG's path effect."""
    root = ET.fromstring(svg)
    halo = f"stroke: #ffffff; stroke-width: {width:g}px; stroke-linejoin: round; paint-order: stroke"
    for group in root.iter(f"{{{_SVG}}}g"):
        if group.get("id", "").startswith(_LABEL_GID):
            for text in group.iter(f"{{{_SVG}}}text"):
                text.set("style", f"{text.get('style', '').rstrip('; ')}; {halo}")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
