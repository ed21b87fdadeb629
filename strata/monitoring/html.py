"""Self-contained HTML drift reports: inline CSS and SVG, no script, nothing fetched.

Pure (imports the layer's models only), so the remote client renders the same page from
the report the server returns."""

from __future__ import annotations

from html import escape
from typing import Any

from strata.monitoring.models import ColumnDrift, DriftReport

W, H = 360, 120
_CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:left}.drift{color:#b00020;font-weight:600}.ok{color:#1b5e20}.grid{display:flex;
flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;border-radius:6px;padding:8px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""
REF_COLOR, CUR_COLOR = "#4c78a8", "#f58518"


def _bars(col: ColumnDrift) -> str:
    """Reference and current shares side by side per bin or category."""
    ov: dict[str, Any] = col.overlay
    ref, cur = ov.get("reference") or [], ov.get("current") or []
    n = len(ref)
    if not n:
        return "<p>no distribution</p>"
    top = max(max(ref), max(cur), 1e-12)
    bw = W / n
    parts = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        for j, (share, color) in enumerate(((r, REF_COLOR), (c, CUR_COLOR))):
            h = H * share / top
            x = i * bw + j * bw / 2
            parts.append(
                f'<rect x="{x:.2f}" y="{H - h:.2f}" width="{max(bw / 2 - 0.5, 0.5):.2f}" '
                f'height="{h:.2f}" fill="{color}" opacity="0.85"/>'
            )
    if "edges" in ov:
        lo, hi = ov["edges"][0], ov["edges"][-1]
        axis = f"{lo:.4g} … {hi:.4g}"
    else:
        cats = ov.get("categories", [])
        axis = ", ".join(escape(str(c)) for c in cats[:8]) + (" …" if len(cats) > 8 else "")
    return (
        f'<svg width="{W}" height="{H}" role="img" aria-label="distribution overlay">'
        + "".join(parts)
        + f'</svg><div style="font-size:11px;color:#666;max-width:{W}px">{axis}</div>'
    )


def render_drift(report: DriftReport) -> str:
    """The report as one HTML page."""
    rows = []
    for name, col in report.columns.items():
        cls = "drift" if col.drifted else "ok"
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{col.kind}</td><td>{col.method.value}</td>"
            f"<td>{col.score:.4g}</td><td>{col.threshold:g}</td>"
            f'<td class="{cls}">{"drift" if col.drifted else col.status}</td></tr>'
        )
    cards = [
        f'<div class="card"><b>{escape(name)}</b> — {col.method.value} {col.score:.4g}'
        f"{' (drift)' if col.drifted else ''}<br>{_bars(col)}</div>"
        for name, col in report.columns.items()
        if col.status == "tested"
    ]
    missing = "".join(
        f"<p>Missing in {escape(side)}: {escape(', '.join(cols))}</p>"
        for side, cols in report.missing.items()
    )
    verdict = (
        "no data"
        if report.status == "no data"
        else ("dataset drift" if report.dataset_drift else "no dataset drift")
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Drift: {escape(report.current)} vs {escape(report.reference)}</title>
<style>{_CSS}</style></head><body>
<h1>Drift report</h1>
<p>Reference <b>{escape(report.reference)}</b> ({report.reference_rows:,} rows) · current
<b>{escape(report.current)}</b> ({report.current_rows:,} rows)</p>
<p><b>{verdict}</b>: {report.drifted_count} of {len(report.columns)} columns drifted
(share {report.drifted_share:.3f}, threshold {report.drift_share_threshold:g})</p>
{missing}
<table><tr><th>column</th><th>type</th><th>method</th><th>score</th><th>threshold</th>
<th>result</th></tr>{"".join(rows)}</table>
<p class="legend"><span style="background:{REF_COLOR}"></span>reference
<span style="background:{CUR_COLOR}"></span>current</p>
<div class="grid">{"".join(cards)}</div>
</body></html>
"""
