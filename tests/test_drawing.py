"""segsql/drawing.py: one drawing, written as SVG and as PNG, shows the same shapes in the same
places (the PNG is checked pixel by pixel against the shapes' coordinates)."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from xml.etree import ElementTree

import pytest
from PIL import Image, ImageChops, ImageColor

from segsql.drawing import PNG_SCALE, Circle, Drawing, Rect, Text, to_png, to_svg, write_drawing
from segsql.errors import ExecutionError, SpecError
from segsql.history import Growth
from segsql.history_plot import growth_chart, series_of
from segsql.overlap import heatmap

SVG = "{http://www.w3.org/2000/svg}"


def growth_rows() -> list[Growth]:
    sizes = {"active": [5, 9, 14, 12], "lapsed": [20, 18, 11, 3], "vip": [0, 1, 1, 2]}
    return [
        Growth(name, None, dt.date(2024, 1, 7) + dt.timedelta(weeks=i), size, *[None] * 6)
        for name, series in sizes.items()
        for i, size in enumerate(series)
    ]


def overlap_pairs() -> list[dict[str, object]]:
    values = {("a", "b"): 0.25, ("b", "a"): 1.0, ("a", "c"): 0.0, ("c", "a"): 0.0}
    values |= {("b", "c"): None, ("c", "b"): None}
    return [{"entity": "customer", "a": a, "b": b, "jaccard": v} for (a, b), v in values.items()]


def png(drawing: Drawing) -> Image.Image:
    return Image.open(io.BytesIO(to_png(drawing))).convert("RGB")


def pixel(image: Image.Image, x: float, y: float) -> tuple[int, ...]:
    value = image.getpixel((round(x * PNG_SCALE), round(y * PNG_SCALE)))
    assert isinstance(value, tuple)
    return value


def ink_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The bounding box of everything that is not white."""
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    assert box is not None
    return box


def test_every_growth_point_is_drawn_in_its_series_colour() -> None:
    chart = growth_chart(series_of(growth_rows()))
    image = png(chart)
    assert image.size == (chart.width * PNG_SCALE, chart.height * PNG_SCALE)
    points = [s for s in chart.shapes if isinstance(s, Circle)]
    assert len(points) == 12
    for point in points:
        assert pixel(image, point.x, point.y) == ImageColor.getrgb(point.fill)


def test_heat_map_cells_are_filled_as_their_value_says() -> None:
    drawing = heatmap(overlap_pairs(), "jaccard")
    image = png(drawing)
    cells = [s for s in drawing.shapes if isinstance(s, Rect)]
    assert len(cells) == 9  # 3 x 3, the diagonal and the empty pairs grey
    fills = Counter(c.fill for c in cells)
    assert fills["#ddd"] == 5 and fills["rgb(8,48,107)"] == 1  # b in a: 1.0, the darkest
    for cell in cells:  # a corner inside the cell's white border, clear of its text
        assert pixel(image, cell.x + 4, cell.y + 4) == ImageColor.getrgb(cell.fill)


def test_svg_has_one_element_per_shape() -> None:
    chart = growth_chart(series_of(growth_rows()))
    root = ElementTree.fromstring(to_svg(chart))
    drawn = Counter(element.tag.removeprefix(SVG) for element in root.iter())
    shapes = Counter(type(s).__name__.lower() for s in chart.shapes)
    assert drawn["circle"] == shapes["circle"] == 12
    assert drawn["polyline"] == shapes["polyline"] == 3
    assert drawn["text"] == shapes["text"]
    assert drawn["rect"] == shapes["rect"] + 1  # the white background
    assert [t.text for t in root.iter(f"{SVG}title")][:2] == [
        "segment size over time",
        "active 2024-01-07: 5",
    ]


class Box(NamedTuple):
    left: float
    top: float
    right: float
    bottom: float


@pytest.mark.parametrize(
    ("text", "inside"),
    [
        # where a text's ink must lie relative to its anchor at (100, 100), in SVG pixels
        (
            Text(100, 100, "segment_name"),
            lambda b: b.left >= 99 and b.bottom <= 104 and b.right > 150,
        ),
        (Text(100, 100, "segment_name", anchor="end"), lambda b: b.right <= 101 and b.left < 50),
        (Text(100, 100, "mid", anchor="middle"), lambda b: b.left < 100 < b.right),
        # rotate(-60): up and to the right of the anchor (its height leans left), taller than wide
        (
            Text(100, 100, "segment_name", rotate=-60),
            lambda b: (
                b.left >= 100 - 12 and b.bottom <= 104 and b.bottom - b.top > b.right - b.left
            ),
        ),
    ],
)
def test_text_is_drawn_where_its_anchor_says(text: Text, inside: Callable[[Box], bool]) -> None:
    image = png(Drawing(200, 200, "t", 12, (text,)))
    box = Box(*(v / PNG_SCALE for v in ink_box(image)))
    assert inside(box), box


def test_the_same_drawing_gives_the_same_bytes() -> None:
    chart = growth_chart(series_of(growth_rows()))
    assert to_png(chart) == to_png(growth_chart(series_of(growth_rows())))
    assert to_svg(chart) == to_svg(growth_chart(series_of(growth_rows())))


def test_an_unknown_format_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"write a \.svg or a \.png file"):
        write_drawing(tmp_path / "chart.jpg", growth_chart(series_of(growth_rows())))
    assert list(tmp_path.iterdir()) == []
    write_drawing(tmp_path / "chart.PNG", growth_chart(series_of(growth_rows())))
    assert (tmp_path / "chart.PNG").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_chart_that_cannot_be_written_is_a_runtime_error(tmp_path: Path) -> None:
    folder = tmp_path / "chart.png"
    folder.mkdir()
    with pytest.raises(ExecutionError, match="cannot write the chart to") as raised:
        write_drawing(folder, growth_chart(series_of(growth_rows())))
    assert raised.value.hint == "that path is a folder: name a file inside it"
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]  # no temporary file left
