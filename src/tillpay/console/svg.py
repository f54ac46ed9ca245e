"""Tiny server-side SVG charts (no JS, no library): markup built with escaping."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 8, 28, 12


def bar_chart(
    points: Sequence[tuple[str, int]],
    *,
    title: str,
    value_label: Callable[[int], str],
    every: int = 5,
) -> Markup:
    """A bar per point (label, value); every ``every``-th label under its bar. Each bar
    has a ``<title>`` (hover and screen readers); the chart has a role and a name."""
    count = max(len(points), 1)
    peak = max((v for _, v in points), default=0) or 1
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT * 2) / count
    bar_w = max(slot * 0.7, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - LEFT}" '
        f'y2="{TOP + plot_h}"/>',
    ]
    for fraction in (0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - LEFT}" y2="{y:.1f}"/>'
        )
    for i, (label, value) in enumerate(points):
        h = plot_h * value / peak
        x = LEFT + i * slot + (slot - bar_w) / 2
        y = TOP + plot_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
            f'height="{max(h, 0.0):.1f}" rx="2"><title>{escape(label)}: '
            f"{escape(value_label(value))}</title></rect>"
        )
        if i % every == 0 or i == len(points) - 1:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                f"{escape(label[5:])}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  # nosec B704 - every value above is escaped or a number
