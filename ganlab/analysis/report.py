"""One self-contained HTML report of a study: every figure of ``ganlab.analysis.figures`` embedded as a PNG
data URI (it opens offline, by e-mail, from a paper's supplement) and also written as PNG files next to it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ganlab.analysis.figures import (
    BINS,
    _acc_prefix,
    accuracy_curves,
    at_a_glance,
    bin_continuous,
    choose_axes,
    oscillation,
    parallel_coordinates,
    sample_snapshots,
    stability_map,
    verdict_counts,
)
from ganlab.analysis.frames import history_of, load_study
from ganlab.analysis.tables import default_by, stability_table, verdicts_of
from ganlab.config.study import short_names
from ganlab.diagnose import metrics as M


@dataclass
class Report:
    html: Path
    figures: list[Path]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _study_text(client, parent_run_id: str) -> str:
    """The description in the study file the parent run keeps as an artifact."""
    import yaml

    try:
        files = [a.path for a in client.list_artifacts(parent_run_id) if a.path.endswith((".yaml", ".yml"))]
        if not files:
            return ""
        with tempfile.TemporaryDirectory() as tmp:
            text = Path(client.download_artifacts(parent_run_id, files[0], tmp)).read_text()
        return str((yaml.safe_load(text) or {}).get("description", "") or "")
    except Exception:  # noqa: BLE001 - the report does not need it
        return ""


CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #666; font-size: 0.9em; } .glance li { margin: 0.2em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.82em; } td, th { border: 1px solid #ddd; padding: 3px 6px; text-align: right; }
th { background: #f5f5f5; } .scroll { overflow-x: auto; max-width: 100%; } .row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
"""
CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var figures = document.querySelectorAll('img.figure');
  var ok = 0;
  figures.forEach(function (img) { if (img.complete && img.naturalWidth > 0) { ok += 1; } });
  document.body.setAttribute('data-rendered', ok + '/' + figures.length);
});
"""


def _table_html(table: pd.DataFrame) -> str:
    def cell(column: str, value) -> str:
        if isinstance(value, float) and math.isnan(value):
            return "<td></td>"
        if column == "rate converged":
            hue = int(120 * value)  # red (0) to green (120)
            return f'<td style="background: hsl({hue}, 70%, 80%)">{value:.2f}</td>'
        if isinstance(value, float):
            return f"<td>{value:.3g}</td>"
        return f"<td>{html.escape(str(value))}</td>"

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(cell(c, v) for c, v in zip(table.columns, row)) + "</tr>"
                   for row in table.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    name: str,
    out: str | Path,
    tracking_uri: str | None = None,
    run: str = "latest",
    phase: str | None = None,
    axes: list[str] | None = None,
    trials: pd.DataFrame | None = None,
    progress=print,
) -> Report:
    """The report of one run of a study: ``out`` (one HTML file, every figure embedded) and the figures as
    PNG in ``<out stem>_figures/``. Written to temporary names and moved in place at the end, so a failure
    leaves nothing half-written. ``trials``: the study's ``load_study`` frame, when the caller has it."""
    from mlflow.tracking import MlflowClient

    from ganlab.track.store import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    out = Path(out)
    progress(f"[report] reading study {name!r} from {uri}")
    df = load_study(name, uri, run=run, phase=phase) if trials is None else trials
    if df.empty:
        raise LookupError(f"study {name!r} has no trials in its {run} run yet")
    by = default_by(df) if df.attrs.get("swept") else []
    df, binned = bin_continuous(df, by)
    x, y = choose_axes(df, by, axes)
    prefix = _acc_prefix(df.columns)
    history = history_of(df, uri, [M.acc_name(prefix, "real"), M.acc_name(prefix, "fake")])
    table = stability_table(df, by) if by else None

    figures: list[tuple[str, str, object]] = []
    progress("[report] drawing figures")
    if x is not None:
        figures.append(("stability_map", "Stability map: each cell the fraction of seeds that converged, with the "
                        "count; green cells keep D at the equilibrium.", stability_map(df, x, y)))
    figures.append(("verdicts", "Verdict counts per configuration.", verdict_counts(df, by)))
    figures.append(("d_accuracy", "D accuracy on real and on generated samples over training, per configuration. "
                    "At the equilibrium both stay near 50% (dashed); real near 1 with fake near 1 means D dominates, "
                    "fake near 0 that G fools D.", accuracy_curves(df, history, by)))
    if x is not None:
        figures.append(("oscillation", "Oscillation amplitude and period of D's loss at the end of training against "
                        f"{short_names([x])[x]}.", oscillation(df, x, y)))
    snapshots = sample_snapshots(df, by, uri)
    if snapshots is not None:
        figures.append(("samples", "Samples at the last sample plot of each configuration's lowest seed.", snapshots))
    if by:
        figures.append(("parallel", "Parallel coordinates: each trial's swept parameters and seed against its final "
                        "D accuracy, equilibrium gap and oscillation, coloured by verdict.", parallel_coordinates(df, by)))

    client = MlflowClient(uri)
    parent = df["parent_run_id"].iloc[0]
    description = _study_text(client, parent)
    status = verdicts_of(df).value_counts()
    figures_dir = out.with_name(out.stem + "_figures")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ganlab-report-", dir=out.parent))
    try:
        sections = []
        (staging / "figures").mkdir()
        for key, caption, fig in figures:
            png = _png(fig)
            (staging / "figures" / f"{key}.png").write_bytes(png)
            sections.append(
                f'<figure id="{key}"><img class="figure" alt="{key}" src="data:image/png;base64,'
                f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(caption)}</figcaption></figure>'
            )
        glance = "".join(f"<li>{line}</li>" for line in at_a_glance(df, by))
        counts = ", ".join(f"{n} {v}" for v, n in status.items())
        document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ganlab report: {html.escape(name)}</title>
<style>{CSS}</style></head>
<body>
<h1>Study {html.escape(name)}</h1>
<p>{html.escape(description)}</p>
<p class="meta">{len(df)} trials ({html.escape(counts)}) &middot; swept: {html.escape(', '.join(by) or 'seeds only')}
{f"&middot; binned into {BINS} ranges (a random or Optuna search): {html.escape(', '.join(binned))}" if binned else ''}
&middot; parent run {html.escape(parent)} &middot; tracking store {html.escape(uri)}
&middot; generated {time.strftime('%Y-%m-%d %H:%M')} by ganlab</p>
<h2>At a glance</h2><ul class="glance">{glance}</ul>
{''.join(sections[:2])}
<h2>Dynamics</h2>
{''.join(sections[2:])}
<h2>Stability across seeds</h2>
<p class="meta">Per configuration: seeds, the fraction of each verdict (converged with its 95% Wilson interval),
and the mean over seeds of the final diagnostics with the half-width of a 95% Student-t interval (ci).
In pandas: <code>stability_table(load_study("{html.escape(name)}"))</code>.</p>
<div class="scroll">{_table_html(table) if table is not None else ''}</div>
<h2>Trials</h2>
<div class="scroll">{_table_html(df[['trial', 'seed', 'trial_status', 'verdict', 'stop_reason', 'duration_s']].fillna(''))}</div>
<script>{CHECK_SCRIPT}</script>
</body></html>
"""
        (staging / "report.html").write_text(document)
        if figures_dir.exists():
            shutil.rmtree(figures_dir)
        os.replace(staging / "figures", figures_dir)
        os.replace(staging / "report.html", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = [figures_dir / f"{key}.png" for key, _, _ in figures]
    progress(f"[report] wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {len(written)} figures in {figures_dir}/")
    return Report(out, written)
