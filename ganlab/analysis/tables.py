"""Stability across seeds: verdict rates with Wilson intervals and metric means with Student-t intervals,
per configuration; two studies side by side."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ganlab.analysis.frames import load_study
from ganlab.diagnose import metrics as M


VERDICT_ORDER = ("converged", "oscillating", "drifting", "unbalanced", "mode_collapse", "d_dominates", "g_dominates",
                 "diverged", "failed", "none")
"""Verdict columns in this order; ``failed`` is a trial that ended with an error, ``none`` one that logged no
eval step (a scheduler stopped it before its first)."""
TABLE_METRICS = (
    M.ACC_REAL, M.ACC_FAKE, M.ACC_SIGN_REAL, M.ACC_SIGN_FAKE, M.EQ_ACC_GAP,
    M.OSC_LOSS_D_PTP, M.OSC_LOSS_D_PERIOD, M.EVAL_MODES, M.EVAL_FD,
)
"""What ``stability_table`` summarises by default (those the study logged): final D accuracy on real and on
fake (sign accuracy for critics), the equilibrium gap, D-loss oscillation amplitude (peak to peak) and
dominant period over the last ``diagnostics.window`` iterations, modes covered and Frechet distance."""
CONFIDENCE = 0.95


def verdicts_of(df: pd.DataFrame) -> pd.Series:
    """A trial's verdict, with failed trials and trials stopped before any eval named instead of dropped."""
    failed = df.get("trial_status", pd.Series(index=df.index, dtype=object)).eq("failed")
    return df["verdict"].where(df["verdict"].notna() & ~failed, failed.map({True: "failed", False: "none"}))


def wilson_interval(k: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n: stays inside [0, 1] and is not degenerate at 0/n or n/n,
    unlike the normal approximation (3 of 3 seeds converged is not a certainty)."""
    from scipy import stats

    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def default_by(df: pd.DataFrame) -> list[str]:
    """The swept keys of the study (without the seed): one configuration per distinct combination."""
    by = [k for k in df.attrs.get("swept", []) if k in df.columns and k != "seed"]
    if not by:
        raise KeyError("the frame names no swept keys (df.attrs['swept']); pass by=[...] with the columns to group by")
    return by


def stability_table(
    df: pd.DataFrame,
    by: list[str] | None = None,
    metrics: list[str] | None = None,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per configuration (a distinct combination of ``by``, default the swept keys) across its seeds:
    ``seeds``, ``rate <verdict>`` for every verdict that occurs (converged first, with a Wilson interval
    ``converged lo``/``converged hi``), and for each metric its ``mean`` and the half-width ``ci`` of a
    Student-t interval over the seeds (NaN with one seed). Failed trials count as verdict ``failed``:
    nothing is dropped. Rows are sorted by ``by``.
    """
    from scipy import stats

    by = list(by) if by else default_by(df)
    missing = [k for k in by if k not in df.columns]
    if missing:
        plain = [str(c) for c in df.columns if "/" not in str(c)]
        raise KeyError(f"no column {missing[0]!r} to group by; columns: {', '.join(plain)} or a diagnostic")
    if metrics is None:
        metrics = [m for m in TABLE_METRICS if m in df.columns and df[m].notna().any()]
    else:
        unknown = [m for m in metrics if m not in df.columns]
        if unknown:
            raise KeyError(f"no metric {unknown[0]!r} in the frame")
    frame = df.assign(_verdict=verdicts_of(df))
    groups = frame.groupby(by, dropna=False, sort=True)
    out = groups.size().rename("seeds").to_frame()
    counts = groups["_verdict"].value_counts().unstack(fill_value=0)
    present = [v for v in VERDICT_ORDER if v in counts.columns or v == "converged"]
    counts = counts.reindex(columns=present, fill_value=0)
    for verdict in present:
        out[f"rate {verdict}"] = counts[verdict] / out["seeds"]
        if verdict == "converged":
            bounds = [wilson_interval(k, n, confidence) for k, n in zip(counts[verdict], out["seeds"])]
            out["converged lo"] = [b[0] for b in bounds]
            out["converged hi"] = [b[1] for b in bounds]
    for metric in metrics:
        agg = groups[metric].agg(["mean", "std", "count"])
        t = agg["count"].map(lambda n: stats.t.ppf(0.5 + confidence / 2, n - 1) if n > 1 else float("nan"))
        out[f"{metric} mean"] = agg["mean"]
        out[f"{metric} ci"] = t * agg["std"] / agg["count"].pow(0.5)
    return out.reset_index()


def compare(
    study_a: str | pd.DataFrame,
    study_b: str | pd.DataFrame,
    by: list[str] | None = None,
    metrics: list[str] | None = None,
    tracking_uri: str | None = None,
    labels: tuple[str, str] | None = None,
    **load: Any,
) -> pd.DataFrame:
    """The stability tables of two studies side by side: columns ``(label, column)``, one row per
    configuration of either study (outer join on ``by``; NaN where a study lacks it). Studies are names
    (loaded with ``load_study(name, tracking_uri, **load)``) or frames from ``load_study``, e.g. a search
    and its confirmation phase. ``by`` defaults to the swept keys the two share.
    """
    frames, names = [], []
    for study in (study_a, study_b):
        if isinstance(study, pd.DataFrame):
            frames.append(study)
            names.append(str(study.attrs.get("study", f"study {len(names) + 1}")))
        else:
            frame = load_study(study, tracking_uri, **load)
            frame.attrs["study"] = study
            frames.append(frame)
            names.append(study)
    if labels is None:
        labels = (names[0], names[1]) if names[0] != names[1] else (f"{names[0]} (a)", f"{names[1]} (b)")
    if by is None:
        shared = [k for k in frames[0].attrs.get("swept", []) if k in frames[1].attrs.get("swept", [])]
        if not shared:
            raise KeyError("the two studies share no swept key; pass by=[...] with columns both have")
        by = shared
    tables = [stability_table(f, by, metrics).set_index(by) for f in frames]
    return pd.concat(dict(zip(labels, tables)), axis=1).sort_index()
