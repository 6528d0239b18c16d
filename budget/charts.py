"""Server-side chart geometry for the admin's spend page (no JavaScript, no network).

Pure functions: the template draws the rectangles these return as inline SVG.
"""

import datetime as dt
from dataclasses import dataclass

from budget.policies import usd

PALETTE = ("#7e57c2", "#26a69a", "#ef6c00", "#42a5f5", "#d81b60", "#8d6e63", "#9e9d24")


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    color: str
    title: str


@dataclass(frozen=True)
class Legend:
    label: str
    color: str
    total: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    legend: list[Legend]
    max_label: str
    x_labels: list[tuple[int, str]]


def stacked_daily(
    *, days: list[dt.date], series: dict[str, list[int]], width: int = 900, height: int = 260
) -> Chart:
    """Spend per day, one stacked bar per day, one colour per series (e.g. provider)."""
    names = sorted(series, key=lambda n: -sum(series[n]))
    totals = [sum(series[n][i] for n in names) for i in range(len(days))]
    top = max(totals, default=0) or 1
    slot = width // max(1, len(days))
    bars: list[Bar] = []
    for i, day in enumerate(days):
        y = height
        for j, name in enumerate(names):
            value = series[name][i]
            if not value:
                continue
            h = max(1, round(value * (height - 10) / top))
            y -= h
            bars.append(
                Bar(
                    x=i * slot + 2,
                    y=y,
                    width=max(1, slot - 4),
                    height=h,
                    color=PALETTE[j % len(PALETTE)],
                    title=f"{day.isoformat()} {name}: ${usd(value)}",
                )
            )
    legend = [
        Legend(label=name, color=PALETTE[j % len(PALETTE)], total=usd(sum(series[name])))
        for j, name in enumerate(names)
    ]
    x_labels = [(i * slot, day.strftime("%m-%d")) for i, day in enumerate(days) if i % 5 == 0]
    return Chart(
        width=width,
        height=height,
        bars=bars,
        legend=legend,
        max_label=usd(top),
        x_labels=x_labels,
    )


def horizontal(*, values: dict[str, int], width: int = 900, row: int = 22) -> Chart:
    """One horizontal bar per key (e.g. component), largest first."""
    items = sorted(values.items(), key=lambda kv: -kv[1])
    top = max((v for _, v in items), default=0) or 1
    label_w = 160
    bars = [
        Bar(
            x=label_w,
            y=i * row,
            width=max(1, round(v * (width - label_w - 120) / top)),
            height=row - 4,
            color=PALETTE[i % len(PALETTE)],
            title=f"{k or '(none)'}: ${usd(v)}",
        )
        for i, (k, v) in enumerate(items)
    ]
    legend = [
        Legend(label=k or "(none)", color=b.color, total=usd(v))
        for (k, v), b in zip(items, bars, strict=True)
    ]
    return Chart(
        width=width,
        height=max(row, len(items) * row),
        bars=bars,
        legend=legend,
        max_label=usd(top),
        x_labels=[],
    )
