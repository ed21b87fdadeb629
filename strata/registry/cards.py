"""Model cards: Markdown, and the same rendered as one self-contained HTML page.

A card is generated from what the registry and tracking already know — the version's
source, digest, signature, metrics and lineage; the profiles of its training datasets (data
layer); the run's evaluation (``evaluation/report.json`` written by :func:`strata.evaluate`:
metrics, fairness tables, the SHAP importance plot) — plus the owner's own sections
(intended use, limitations, notes). User text is escaped in HTML (markdown-it with raw HTML
off); the SHAP plot is inlined as a data URI, so the page loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import json
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from strata.core.errors import StrataError
from strata.registry.models import ModelVersion, RegisteredModel

if TYPE_CHECKING:
    from strata.registry.embedded import EmbeddedRegistry

EVAL_DIR = "evaluation"
MAX_PLOT = 2 * 1024 * 1024
_TODO = "_Not written yet: the owner can add it with `strata models card NAME VERSION --edit`._"


def _cell(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def _read_artifact(reg: EmbeddedRegistry, run_id: str, path: str, limit: int) -> bytes | None:
    with suppress(StrataError):
        _, _, reader = reg.tracking.open_artifact(run_id, path)
        with reader:
            raw: bytes = reader.read(limit + 1)
        return raw if len(raw) <= limit else None
    return None


def _profile_rows(reg: EmbeddedRegistry, ref: str) -> list[list[Any]]:
    try:
        profile = reg.data.profile(ref)
    except StrataError:
        return []
    rows = []
    for col in profile.columns[:40]:
        mean = getattr(col, "mean", None)
        rows.append(
            [
                col.name,
                col.type,
                col.count,
                f"{col.null_fraction:.1%}",
                col.distinct or "",
                "" if mean is None else mean,
            ]
        )
    return rows


def markdown(
    reg: EmbeddedRegistry, mv: ModelVersion, model: RegisteredModel
) -> tuple[str, bytes | None]:
    """The card as Markdown, and the SHAP plot's PNG bytes when the run has one."""
    lines = [f"# Model card: {mv.name} v{mv.version}", ""]
    if model.description:
        lines += [model.description, ""]
    lines += _table(
        ["field", "value"],
        [
            ["owner", model.owner],
            ["status", mv.status.value],
            ["aliases", ", ".join(mv.aliases) or "none"],
            ["flavor", mv.flavor or ""],
            ["source", mv.source],
            ["manifest sha256", mv.digest or ""],
            ["registered by", mv.created_by],
            ["registered at", mv.created_at.isoformat()],
            ["code commit", mv.lineage.git_commit or "unknown"],
        ],
    )
    lines += ["", "## Intended use", "", mv.card.get("intended_use") or _TODO, ""]
    lines += ["## Training data", ""]
    datasets = mv.lineage.datasets
    if datasets:
        lines += _table(
            ["dataset", "digest", "context", "source"],
            [
                [
                    d.get("name", ""),
                    d.get("digest", "")[:16],
                    d.get("context", ""),
                    d.get("source", ""),
                ]
                for d in datasets
            ],
        )
    else:
        lines.append("_The run recorded no input datasets._")
    refs = list(dict.fromkeys(mv.lineage.dataset_versions))
    for ref in refs:
        rows = _profile_rows(reg, ref)
        if rows:
            lines += ["", f"### Profile of `{ref}`", ""]
            lines += _table(["column", "type", "count", "nulls", "distinct", "mean"], rows)
    lines += ["", "## Metrics", ""]
    if mv.metrics:
        lines += _table(["metric", "value"], [[k, v] for k, v in sorted(mv.metrics.items())])
    else:
        lines.append("_The run logged no metrics._")
    if mv.signature:
        inputs = mv.signature.get("inputs") or []
        if isinstance(inputs, list) and inputs:
            lines += ["", "## Signature", ""]
            lines += _table(
                ["input", "dtype"],
                [[i.get("name", ""), i.get("dtype", "")] for i in inputs if isinstance(i, dict)],
            )
    plot: bytes | None = None
    report: dict[str, Any] | None = None
    if mv.run_id:
        raw = _read_artifact(reg, mv.run_id, f"{EVAL_DIR}/report.json", 8 * 1024 * 1024)
        if raw:
            with suppress(ValueError):
                report = json.loads(raw)
        plot = _read_artifact(reg, mv.run_id, f"{EVAL_DIR}/shap_importance.png", MAX_PLOT)
    lines += ["", "## Evaluation", ""]
    if isinstance(report, dict):
        lines.append(
            f"On `{report.get('data', '?')}` (target `{report.get('target', '?')}`, "
            f"{report.get('rows', '?')} rows):"
        )
        lines.append("")
        metrics = report.get("metrics") or {}
        lines += _table(["metric", "value"], [[k, v] for k, v in sorted(metrics.items())])
        for fair in report.get("fairness") or []:
            groups = fair.get("by_group") or {}
            names = sorted({k for g in groups.values() if isinstance(g, dict) for k in g})
            lines += ["", f"### Fairness by `{fair.get('column', '?')}`", ""]
            lines += _table(
                ["group", *names],
                [[g, *[(v or {}).get(n, "") for n in names]] for g, v in sorted(groups.items())],
            )
            for key in ("demographic_parity_difference", "equalized_odds_difference"):
                if fair.get(key) is not None:
                    lines += ["", f"{key.replace('_', ' ')}: {_cell(float(fair[key]))}"]
        shap = report.get("shap_importance") or {}
        if shap and plot is None:
            top = sorted(shap.items(), key=lambda kv: -abs(float(kv[1])))[:15]
            lines += ["", "### SHAP importance", ""]
            lines += _table(["feature", "mean |SHAP|"], [[k, float(v)] for k, v in top])
    else:
        lines.append("_No evaluation was stored with the run (run `strata.evaluate` on it)._")
    if plot is not None:
        lines += ["", "### SHAP importance", "", "![SHAP importance](shap_importance.png)"]
    lines += ["", "## Limitations", "", mv.card.get("limitations") or _TODO, ""]
    lines += ["## Notes", "", mv.card.get("notes") or _TODO, ""]
    return "\n".join(lines), plot


_CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;
color:#1d2330}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #cfd6e0;
padding:.25em .6em;text-align:left}th{background:#eef2f7}code{background:#f3f5f8;padding:0 .2em}
img{max-width:100%}h1{border-bottom:2px solid #cfd6e0}"""


def html(md: str, plot: bytes | None, title: str) -> str:
    from html import escape

    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = renderer.render(md)
    if plot is not None:
        data = base64.b64encode(plot).decode()
        body = body.replace('src="shap_importance.png"', f'src="data:image/png;base64,{data}"')
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


def render(reg: EmbeddedRegistry, mv: ModelVersion, model: RegisteredModel, fmt: str) -> str:
    md, plot = markdown(reg, mv, model)
    if fmt == "html":
        return html(md, plot, f"{mv.name} v{mv.version}")
    return md
