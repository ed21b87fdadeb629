"""Model cards read what strata.evaluate stored with the run: the SHAP plot is inlined in
the HTML page, fairness tables and metrics come from ``evaluation/report.json``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from registry_helpers import log_run

from strata.client import Client


def test_card_inlines_the_runs_shap_plot(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Client() as client:
        run_id = log_run(client)
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.barh(["x0", "x1"], [0.3, 0.1])
        (tmp_path / "evaluation").mkdir()
        fig.savefig(tmp_path / "evaluation" / "shap_importance.png")
        plt.close(fig)
        report = {
            "data": "flights@1",
            "target": "late",
            "rows": 60,
            "metrics": {"roc_auc": 0.81},
            "fairness": [
                {
                    "column": "origin",
                    "by_group": {"EWR": {"count": 30, "recall": 0.5}, "JFK": {"count": 30}},
                    "demographic_parity_difference": 0.12,
                }
            ],
            "shap_importance": {"x0": 0.3, "x1": 0.1},
        }
        (tmp_path / "evaluation" / "report.json").write_text(json.dumps(report))
        client.tracking.log_artifacts(run_id, tmp_path / "evaluation", "evaluation")
        client.registry.register("m", run_id)
        md = client.registry.card("m", 1)
        assert "| roc_auc | 0.81 |" in md and "### Fairness by `origin`" in md
        assert "| EWR | 30 | 0.5 |" in md and "demographic parity difference: 0.12" in md
        assert "![SHAP importance](shap_importance.png)" in md
        html = client.registry.card("m", 1, format="html")
        png = (tmp_path / "evaluation" / "shap_importance.png").read_bytes()
        assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in html
