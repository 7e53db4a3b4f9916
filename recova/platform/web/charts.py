"""Charts drawn on the server as inline SVG (pygal), with no script: readable without
JavaScript, in the page's language (the caller passes translated labels and formatters).

Every chart sits in a ``<figure class="chart">`` with a ``<details class="data">`` table of
the same numbers beside it: the SVG is the picture, the table is the record. Values reach
pygal as floats only for drawing; the figures shown in tables stay ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pygal
from markupsafe import Markup
from pygal.style import Style

#: The portal's palette (``recova.css``), then distinct hues for further series.
COLOURS = (
    "#2a6fdb",
    "#1b7f4b",
    "#a86400",
    "#b3261e",
    "#6a4c93",
    "#00838f",
    "#c2185b",
    "#5d6d1e",
    "#1d3557",
    "#e07a1f",
    "#7b8794",
    "#3f51b5",
)
STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#1d2430",
    foreground_strong="#1d2430",
    foreground_subtle="#dde1e7",
    opacity=".85",
    opacity_hover="1",
    colors=COLOURS,
    # The page's own fonts, Chinese first so 中文 labels never fall back to boxes.
    font_family='"Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Microsoft YaHei",'
    " system-ui, sans-serif",
    label_font_size=14,
    major_label_font_size=14,
    value_font_size=13,
    legend_font_size=14,
    title_font_size=15,
    tooltip_font_size=13,
)

Number = Decimal | int | float | None
Formatter = Callable[[float], str]


def without_scripts(root: Any) -> Any:
    """Drop the ``<script>`` pygal writes its settings into even with ``js=[]``: with no
    script at all, the chart is a plain picture (and passes a strict content policy)."""
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _config(**options: object) -> dict[str, object]:
    return {
        "js": [],  # no script: the chart is a picture, its table holds the numbers
        "disable_xml_declaration": True,  # inline in HTML, not a standalone file
        "style": STYLE,
        "width": 960,
        "height": 400,
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 6,
        "truncate_legend": -1,
        "truncate_label": -1,
        "margin": 12,
        # Room for the legend under the axis title: pygal leaves too little, and the
        # legend (the key to the colours) is cut off at the bottom of the picture.
        "margin_bottom": 36,
        "spacing": 10,
        "explicit_size": False,
        **options,
    }


def _floats(values: Sequence[Number]) -> list[float | None]:
    return [None if value is None else float(value) for value in values]


def _svg(chart: pygal.graph.graph.Graph) -> Markup:
    chart.add_xml_filter(without_scripts)
    return Markup(chart.render(is_unicode=True))  # noqa: S704 (pygal escapes every label)


def line_chart(
    series: Sequence[tuple[str, Sequence[Number]]],
    *,
    x_labels: Sequence[str],
    x_title: str,
    y_format: Formatter,
    y_title: str = "",
) -> Markup:
    """Lines over shared x labels; a None value leaves a gap (the line stops)."""
    chart = pygal.Line(
        **_config(
            x_title=x_title,
            y_title=y_title,
            value_formatter=y_format,
            dots_size=3,
            stroke_style={"width": 2},
            show_minor_y_labels=True,
            include_x_axis=True,
        )
    )
    chart.x_labels = list(x_labels)
    for label, values in series:
        chart.add(label, _floats(values), allow_interruptions=True)
    return _svg(chart)


def stacked_bars(
    series: Sequence[tuple[str, Sequence[Number]]],
    *,
    bar_labels: Sequence[str],
    value_format: Formatter,
    title: str = "",
) -> Markup:
    """Horizontal bars, one per label, each split into the series (shares summing to 1)."""
    chart = pygal.HorizontalStackedBar(
        **_config(
            x_title=title,
            value_formatter=value_format,
            range=(0, 1),
            height=max(300, 130 + 44 * len(bar_labels)),
        )
    )
    # pygal stacks horizontal bars bottom-up: reversed, the first label reads on top.
    chart.x_labels = list(reversed(bar_labels))
    for label, values in series:
        chart.add(label, _floats(list(reversed(values))))
    return _svg(chart)


def grouped_bars(
    series: Sequence[tuple[str, Sequence[Number]]],
    *,
    bar_labels: Sequence[str],
    value_format: Formatter,
    title: str = "",
) -> Markup:
    """Horizontal bars grouped by label, one bar per series (this month, last month)."""
    chart = pygal.HorizontalBar(
        **_config(
            x_title=title,
            value_formatter=value_format,
            height=max(300, 130 + 30 * len(bar_labels) * max(1, len(series))),
        )
    )
    # pygal stacks horizontal bars bottom-up: reversed, the first label reads on top.
    chart.x_labels = list(reversed(bar_labels))
    for label, values in series:
        chart.add(label, _floats(list(reversed(values))))
    return _svg(chart)
