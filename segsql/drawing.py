"""Charts as a handful of shapes, written as SVG (no dependency) or PNG (Pillow).

The growth chart (`history_plot.py`) and the overlap heat map (`overlap.py`) each build one
`Drawing`; `write_drawing` picks the writer from the file's suffix. One model for both formats
means a PNG shows exactly what the SVG shows, and a new format is one more writer.

Coordinates are SVG's: pixels from the top left, a text's `y` is its baseline.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from html import escape  # not xml.sax.saxutils: it imports urllib (slow start-up)
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from segsql.errors import ExecutionError, SpecError
from segsql.files import write_output

if TYPE_CHECKING:  # Pillow is imported only when a PNG is written (start-up time)
    from PIL import Image, ImageFont

FORMATS = (".svg", ".png")
PNG_SCALE = 2  # PNGs are drawn at twice the SVG's size: sharp on high-density screens
Anchor = Literal["start", "middle", "end"]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    stroke: str | None = None
    tip: str | None = None  # a tooltip (SVG only)


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str


@dataclass(frozen=True)
class Polyline:
    points: tuple[tuple[float, float], ...]
    stroke: str
    width: float = 2


@dataclass(frozen=True)
class Circle:
    x: float
    y: float
    r: float
    fill: str
    tip: str | None = None


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: Anchor = "start"
    size: int | None = None  # None: the drawing's font size
    fill: str = "#000"
    rotate: float = 0  # degrees clockwise about (x, y), as SVG's rotate()


Shape = Rect | Line | Polyline | Circle | Text


@dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    title: str
    font_size: int
    shapes: tuple[Shape, ...]


def check_plot_path(path: Path, example: str) -> None:
    """Refuse a format we cannot write before any work is done (a typo should not cost a
    warehouse scan)."""
    if path.suffix.lower() not in FORMATS:
        raise SpecError(
            f"cannot plot to '{path}': write a .svg or a .png file",
            hint=f"--plot {example}.svg (browsers and docs sites show SVG) or --plot {example}.png",
        )


def write_drawing(path: Path, drawing: Drawing) -> None:
    check_plot_path(path, path.stem or "chart")
    content = to_png(drawing) if path.suffix.lower() == ".png" else to_svg(drawing)
    write_output(path, content, "the chart")


# ---------------------------------------------------------------------------------------------
# SVG


def to_svg(drawing: Drawing) -> str:
    width, height = drawing.width, drawing.height
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" '
        f'font-size="{drawing.font_size}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f"<title>{_text(drawing.title)}</title>",
    ]
    lines += [_svg_shape(shape) for shape in drawing.shapes]
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def _svg_shape(shape: Shape) -> str:
    match shape:
        case Rect(x, y, width, height, fill, stroke, tip):
            outline = f' stroke="{stroke}"' if stroke else ""
            box = f'x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{_n(height)}"'
            return _with_tip(f'<rect {box} fill="{fill}"{outline}', "rect", tip)
        case Line(x1, y1, x2, y2, stroke):
            ends = f'x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}"'
            return f'<line {ends} stroke="{stroke}"/>'
        case Polyline(points, stroke, width):
            coords = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
            return (
                f'<polyline fill="none" stroke="{stroke}" stroke-width="{_n(width)}" '
                f'points="{coords}"/>'
            )
        case Circle(x, y, r, fill, tip):
            return _with_tip(
                f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}" fill="{fill}"', "circle", tip
            )
        case Text():
            return _svg_text(shape)


def _svg_text(text: Text) -> str:
    attributes = f'x="{_n(text.x)}" y="{_n(text.y)}"'
    if text.anchor != "start":
        attributes += f' text-anchor="{text.anchor}"'
    if text.size is not None:
        attributes += f' font-size="{text.size}"'
    if text.fill != "#000":
        attributes += f' fill="{text.fill}"'
    if text.rotate:
        attributes += f' transform="rotate({_n(text.rotate)} {_n(text.x)} {_n(text.y)})"'
    return f"<text {attributes}>{_text(text.text)}</text>"


def _with_tip(opening: str, tag: str, tip: str | None) -> str:
    if tip is None:
        return opening + "/>"
    return f"{opening}><title>{_text(tip)}</title></{tag}>"


def _n(value: float) -> str:
    """A coordinate to a tenth of a pixel, without a trailing `.0` (deterministic, short)."""
    return f"{value:.1f}".removesuffix(".0")


def _text(value: str) -> str:
    return escape(value, quote=False)


# ---------------------------------------------------------------------------------------------
# PNG


def to_png(drawing: Drawing) -> bytes:
    """The drawing rasterised with Pillow at PNG_SCALE; the same drawing gives the same bytes."""
    from PIL import Image, ImageDraw

    scale = PNG_SCALE
    image = Image.new("RGB", (drawing.width * scale, drawing.height * scale), "white")
    draw = ImageDraw.Draw(image)
    for shape in drawing.shapes:
        match shape:
            case Rect(x, y, width, height, fill, stroke):
                box = (x * scale, y * scale, (x + width) * scale - 1, (y + height) * scale - 1)
                draw.rectangle(box, fill=fill, outline=stroke, width=scale if stroke else 0)
            case Line(x1, y1, x2, y2, stroke):
                draw.line(
                    (x1 * scale, y1 * scale, x2 * scale, y2 * scale), fill=stroke, width=scale
                )
            case Polyline(points, stroke, width):
                scaled = [(x * scale, y * scale) for x, y in points]
                draw.line(scaled, fill=stroke, width=round(width * scale), joint="curve")
            case Circle(x, y, r, fill):
                box = ((x - r) * scale, (y - r) * scale, (x + r) * scale, (y + r) * scale)
                draw.ellipse(box, fill=fill)
            case Text():
                _png_text(image, shape, drawing.font_size, scale)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


PILLOW_ANCHORS = {"start": "ls", "middle": "ms", "end": "rs"}  # horizontal + baseline


def _png_text(image: Image.Image, text: Text, font_size: int, scale: int) -> None:
    from PIL import Image, ImageDraw

    font = _font((text.size or font_size) * scale)
    anchor = PILLOW_ANCHORS[text.anchor]
    x, y = text.x * scale, text.y * scale
    if not text.rotate:
        ImageDraw.Draw(image).text((x, y), text.text, fill=text.fill, font=font, anchor=anchor)
        return
    # rotated: draw on a transparent square centred on the anchor, turn it, lay it over
    reach = round(font.getlength(text.text) + font.size) + 1
    layer = Image.new("RGBA", (2 * reach, 2 * reach), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((reach, reach), text.text, fill=text.fill, font=font, anchor=anchor)
    turned = layer.rotate(-text.rotate, resample=Image.Resampling.BICUBIC)  # PIL: anticlockwise
    image.paste(turned, (round(x) - reach, round(y) - reach), turned)


def _font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled sans-serif font (Aileron): the same glyphs on every machine, so the
    same drawing gives the same PNG everywhere."""
    from PIL import ImageFont

    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # a Pillow built without FreeType
        raise ExecutionError(
            "cannot draw text in a PNG: this Pillow was built without FreeType",
            hint="pip install --force-reinstall pillow (its wheels include FreeType), or plot to .svg",
        )
    return font
