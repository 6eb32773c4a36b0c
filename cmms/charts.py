"""Server-side SVG charts for the dashboard: no JavaScript library and no
CDN (a mine site's network may have no internet). A stacked bar per time
bucket, one colour per (channel, outcome) series."""

from django.utils import timezone
from django.utils.html import escape

PALETTE = {
    "sent": ["#2e7d32", "#1565c0", "#6a1b9a", "#00838f", "#558b2f"],
    "failed": ["#c62828", "#ef6c00", "#ad1457", "#d84315", "#b71c1c"],
    "skipped": ["#9e9e9e", "#757575", "#bdbdbd", "#616161", "#e0e0e0"],
    "other": ["#795548"] * 5,
}
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM = 720, 180, 36, 22


def series_colors(series_keys):
    """A stable colour per (channel, outcome)."""
    channels = sorted({channel for channel, _outcome in series_keys})
    return {key: PALETTE.get(key[1], PALETTE["other"])[channels.index(key[0]) % 5] for key in series_keys}


def stacked_bars(data, labels):
    """The SVG (a safe string) for chart data from cmms.dashboard.chart;
    ``labels`` maps (channel, outcome) to the legend's text."""
    buckets, series = data["buckets"], data["series"]
    keys = sorted(series)
    colors = series_colors(keys)
    totals = [sum(series[k][i] for k in keys) for i in range(len(buckets))]
    top = max(totals + [1])
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM
    bar_w = plot_w / max(len(buckets), 1)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT + 18 * ((len(keys) + 2) // 3)}" '
             f'xmlns="http://www.w3.org/2000/svg" data-unit="{data["unit"]}" data-total="{sum(totals)}">']
    parts.append(f'<text x="2" y="12" class="axis">{top}</text><text x="2" y="{plot_h}" class="axis">0</text>')
    for i, bucket in enumerate(buckets):
        y = plot_h
        x = PAD_LEFT + i * bar_w
        for key in keys:
            n = series[key][i]
            if not n:
                continue
            h = n / top * (plot_h - 4)
            y -= h
            parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                         f'fill="{colors[key]}"><title>{escape(labels[key])}: {n}</title></rect>')
        local = timezone.localtime(bucket)
        if (data["unit"] == "hour" and local.hour % 3 == 0) or (data["unit"] == "day" and i % 5 == 0):
            text = local.strftime("%H:%M") if data["unit"] == "hour" else local.strftime("%d/%m")
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" class="axis">{text}</text>')
    for j, key in enumerate(keys):
        lx, ly = PAD_LEFT + (j % 3) * 230, HEIGHT + 12 + 18 * (j // 3)
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colors[key]}"/>'
                     f'<text x="{lx + 14}" y="{ly}" class="legend">{escape(labels[key])}</text>')
    parts.append("</svg>")
    return "".join(parts)
