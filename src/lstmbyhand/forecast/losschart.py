"""loss.png without matplotlib: a line chart drawn with Pillow (a few ms to import, against
matplotlib's import that every `train` paid for this one figure).

Train and validation loss per epoch on a log axis (linear when a loss is ≤ 0), the best epoch
as a dotted grey line, a legend, tick labels in plain numbers. Drawn at twice the size and
halved (Lanczos), so lines and text are anti-aliased. The axis maps

    x(epoch) = left + (epoch - e0) / (e1 - e0) * width
    y(loss)  = bottom - (f(loss) - f0) / (f1 - f0) * height,   f = log10 (or the identity)

with [e0, e1], [f0, f1] the data's range widened by 5% on each side (matplotlib's margins).
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw, ImageFont

SIZE = (660, 385)  # 6 x 3.5 inches at 110 dpi, the size loss.png always had
DPI = 110
SCALE = 2  # drawn at twice the size, then halved: anti-aliased
MARGIN = (72, 12, 14, 46)  # left, top, right, bottom, in output pixels
COLORS = {"train": (31, 119, 180), "validation": (255, 127, 14), "best": (128, 128, 128)}
TEXT, AXIS, GRID = (0, 0, 0), (0, 0, 0), (235, 235, 235)


def render(
    epochs: list[int], train: list[float], val: list[tuple[int, float]], best: int | None
) -> bytes:
    """The PNG's bytes: train (one per epoch), validation as (epoch, loss) pairs, the best epoch."""
    w, h = SIZE[0] * SCALE, SIZE[1] * SCALE
    image = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11 * SCALE)
    left, top, right, bottom = (m * SCALE for m in MARGIN)
    box = (left, top, w - right, h - bottom)
    values = [v for v in train + [v for _, v in val] if math.isfinite(v)]
    log = bool(values) and min(values) > 0
    f = math.log10 if log else float
    f0, f1 = _widen(*_range([f(v) for v in values] or [0.0, 1.0]))
    e0, e1 = _widen(min(epochs), max(epochs))

    def px(epoch: float, loss: float) -> tuple[float, float]:
        x = box[0] + (epoch - e0) / (e1 - e0) * (box[2] - box[0])
        return x, box[3] - (f(loss) - f0) / (f1 - f0) * (box[3] - box[1])

    yticks = _log_ticks(f0, f1) if log else _nice(f0, f1)
    xticks = [t for t in _nice(e0, e1, integer=True) if e0 <= t <= e1]
    for t in yticks:
        y = px(e0, t)[1]
        draw.line([(box[0], y), (box[2], y)], fill=GRID, width=SCALE)
        draw.line([(box[0] - 4 * SCALE, y), (box[0], y)], fill=AXIS, width=SCALE)
        draw.text((box[0] - 6 * SCALE, y), f"{t:g}", fill=TEXT, font=font, anchor="rm")
    for t in xticks:
        x = px(t, 1.0)[0]
        draw.line([(x, box[3]), (x, box[3] + 4 * SCALE)], fill=AXIS, width=SCALE)
        draw.text((x, box[3] + 6 * SCALE), f"{t:g}", fill=TEXT, font=font, anchor="mt")
    if best is not None:
        x = round(px(best, 1.0)[0] / SCALE) * SCALE  # one whole output column
        for y in range(box[1], box[3], 6 * SCALE):  # dotted
            dot = [x, y, x + SCALE - 1, min(y + 2 * SCALE, box[3])]
            draw.rectangle(dot, fill=COLORS["best"])
    _polyline(draw, [px(e, v) for e, v in zip(epochs, train, strict=True) if math.isfinite(v)],
              COLORS["train"])  # fmt: skip
    _polyline(draw, [px(e, v) for e, v in val if math.isfinite(v)], COLORS["validation"])
    draw.rectangle(box, outline=AXIS, width=SCALE)
    draw.text(((box[0] + box[2]) / 2, h - 8 * SCALE), "epoch", fill=TEXT, font=font, anchor="mb")
    _vertical_text(image, "MSE (scaled)", font, (10 * SCALE, (box[1] + box[3]) // 2))
    entries = [("train", "train")] + ([("validation", "validation")] if val else [])
    if best is not None:
        entries.append(("best", f"best (epoch {best})"))
    _legend(draw, font, entries, (box[2] - 8 * SCALE, box[1] + 8 * SCALE))
    out = io.BytesIO()
    image.resize(SIZE, Image.Resampling.LANCZOS).save(out, format="PNG", dpi=(DPI, DPI))
    return out.getvalue()


def _range(xs: list[float]) -> tuple[float, float]:
    lo, hi = min(xs), max(xs)
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def _widen(lo: float, hi: float) -> tuple[float, float]:
    lo, hi = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _nice(lo: float, hi: float, integer: bool = False) -> list[float]:
    """About 5 ticks at 1, 2 or 5 times a power of ten inside [lo, hi]."""
    raw = (hi - lo) / 5
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if step * m >= raw)
    if integer:
        step = max(1.0, float(round(step)))
    first = math.ceil(lo / step)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step) + 1)]


def _log_ticks(f0: float, f1: float) -> list[float]:
    """Ticks of a log axis spanning 10^f0..10^f1: the decades when three or more fall inside,
    else 1, 2 and 5 times the decades, else every integer multiple (at least two ticks)."""
    for multiples, least in (((1,), 3), ((1, 2, 5), 3), (tuple(range(1, 10)), 2)):
        ticks = [m * 10.0**k for k in range(math.floor(f0), math.ceil(f1) + 1) for m in multiples]
        ticks = [float(f"{t:.6g}") for t in ticks if f0 <= math.log10(t) <= f1]
        if len(ticks) >= least:
            return ticks
    return _nice(10**f0, 10**f1)  # within less than one step of 1..9: linear ticks


def _polyline(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], color) -> None:
    if len(points) == 1:
        (x, y), r = points[0], 2 * SCALE
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
    elif points:
        draw.line(points, fill=color, width=2 * SCALE, joint="curve")


def _vertical_text(image: Image.Image, text: str, font, center: tuple[int, int]) -> None:
    x0, y0, x1, y1 = font.getbbox(text)
    label = Image.new("RGB", (x1 + 2, y1 + 2), "white")
    ImageDraw.Draw(label).text((1, 1), text, fill=TEXT, font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (center[0], center[1] - label.size[1] // 2))


def _legend(draw: ImageDraw.ImageDraw, font, entries: list[tuple[str, str]], corner) -> None:
    """Entries (color key, text) in a framed box whose top-right corner is `corner`."""
    line_h, swatch, gap = 16 * SCALE, 22 * SCALE, 6 * SCALE
    width = max(draw.textlength(text, font=font) for _, text in entries) + swatch + 3 * gap
    x1, y0 = corner
    x0, y1 = x1 - width, y0 + line_h * len(entries) + gap
    draw.rounded_rectangle([x0, y0, x1, y1], radius=3 * SCALE, fill="white",
                           outline=(204, 204, 204), width=SCALE)  # fmt: skip
    for i, (key, text) in enumerate(entries):
        y = y0 + gap / 2 + line_h * i + line_h / 2
        if key == "best":
            for x in range(int(x0 + gap), int(x0 + gap + swatch), 6 * SCALE):
                draw.line([(x, y), (x + 2 * SCALE, y)], fill=COLORS[key], width=SCALE)
        else:
            draw.line([(x0 + gap, y), (x0 + gap + swatch, y)], fill=COLORS[key], width=3 * SCALE)
        draw.text((x0 + 2 * gap + swatch, y), text, fill=TEXT, font=font, anchor="lm")
