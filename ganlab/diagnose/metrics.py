"""Every metric ganlab logs, in one place: its name (the MLflow key), what it measures, its unit, and when it is
logged. The trainer, the verdict, the progress line, the report and the README's metric table read the names
from here, and a test fails on a metric name anywhere in the package that is not registered
(``tests/diagnose/test_metrics.py``).

Cadences: ``step`` from the training step, reduced over each ``log_every`` interval (or sampled at the logged
iteration); ``eval`` at eval steps; ``trial`` written by the study around training (``cost/*``, ``hp/*``).
``window/<metric>`` is derived by ``ganlab.analysis.load_study`` from a registered metric's history: the rule
is registered (``base_name``), not each name.

``python -m ganlab.diagnose.metrics`` rewrites the README's table from this registry.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ganlab.config.lanes import MUTABLE_KEYS

CADENCES = {
    "step": "from the training step, reduced over each `log_every` interval (or sampled at the logged iteration)",
    "eval": "at eval steps (`eval_every`)",
    "trial": "written by the study around training",
    "derived": "computed by `load_study` from a metric's history (not in MLflow)",
}


@dataclass(frozen=True)
class Metric:
    name: str  # the MLflow key, e.g. "d/auc"
    meaning: str  # what it measures, one or two sentences
    unit: str  # "probability", "fraction", "loss units", "iterations", "L2 norm", "ratio", "count", "s", "MiB", ...
    cadence: str  # one of CADENCES
    group: str  # the README table row it belongs to (a key of GROUPS)


@dataclass(frozen=True)
class Group:
    meaning: str  # the README table's meaning text for the row
    also: tuple[str, ...] = ()  # names registered in another row that this row's text also explains


REGISTRY: dict[str, Metric] = {}


def _add(group: str, unit: str, cadence: str, *entries: tuple[str, str]) -> None:
    for name, meaning in entries:
        assert name not in REGISTRY, name
        REGISTRY[name] = Metric(name, meaning, unit, cadence, group)


# --- the names other code reads by name ------------------------------------------------------------------

LOSS_D, LOSS_G = "loss/d", "loss/g"
REG_D = "reg/d"
GRAD_D, GRAD_G = "grad/d", "grad/g"
PARAM_D, PARAM_G = "param/d", "param/g"
UPDATE_D, UPDATE_G = "update/d", "update/g"
D_AUC, D_AUC_NOISE, D_AUC_MEAN = "d/auc", "d/auc_noise", "d/auc_mean"
D_OUT_REAL, D_OUT_FAKE, D_PROB_REAL, D_PROB_FAKE = "d/out_real", "d/out_fake", "d/prob_real", "d/prob_fake"
ACC_PREFIXES = ("acc", "acc_sign")  # thresholded accuracies; critics log the sign of the output as acc_sign/*
ACC_REAL, ACC_FAKE, ACC_MEAN = "acc/real", "acc/fake", "acc/mean"
ACC_SIGN_REAL, ACC_SIGN_FAKE, ACC_SIGN_MEAN = "acc_sign/real", "acc_sign/fake", "acc_sign/mean"
EQ_ACC_GAP, EQ_LOSS_D_GAP, EQ_LOSS_G_GAP = "eq/acc_gap", "eq/loss_d_gap", "eq/loss_g_gap"
OSC_SERIES = ("loss_d", "loss_g", "acc_real", "acc_fake")  # the per-iteration series whose oscillation is measured
OSC_STATS = ("std", "ptp", "noise", "excess", "trend", "period", "period_p")
OSC_DELTA_ZCR = "osc/delta_zcr"
PROGRESS_G_STEPS, PROGRESS_D_STEPS, PROGRESS_REAL_SAMPLES = "progress/g_steps", "progress/d_steps", "progress/real_samples"
EVAL_MODES, EVAL_HQ_FRACTION, EVAL_REVERSE_KL = "eval/modes", "eval/hq_fraction", "eval/reverse_kl"
EVAL_SLICED_W = "eval/sliced_w"
EVAL_FD, EVAL_FD_N, EVAL_CLASSIFIER_ACC = "eval/fd", "eval/fd_n", "eval/classifier_acc"
EVAL_D_PROBE_ACC, EVAL_D_PROBE_ACC_RANDOM = "eval/d_probe_acc", "eval/d_probe_acc_random"
EVAL_DIRAC_THETA, EVAL_DIRAC_PSI, EVAL_DIRAC_DISTANCE = "eval/dirac_theta", "eval/dirac_psi", "eval/dirac_distance"
EVAL_JAC_MAX_REAL, EVAL_JAC_MAX_IMAG, EVAL_JAC_ROTATION = "eval/jac_max_real", "eval/jac_max_imag", "eval/jac_rotation"
EVAL_DUALITY_GAP = "eval/duality_gap"
COST_COMPUTE_S, COST_IO_S, COST_S_PER_STEP = "cost/compute_s", "cost/io_s", "cost/s_per_step"
COST_SAMPLES_PER_S, COST_PEAK_RSS_MB, COST_PACK_LANES = "cost/samples_per_s", "cost/peak_rss_mb", "cost/pack_lanes"
COST_CUDA_MAX_ALLOCATED_MB = "cost/cuda_max_allocated_mb"
HP_LR_G, HP_LR_D = "hp/lr_g", "hp/lr_d"
WINDOW_PREFIX = "window/"  # load_study's windowed means: window/<metric>


def osc_name(series: str, stat: str) -> str:
    """``osc/<series>_<stat>``, e.g. ``osc_name("loss_d", "excess") == "osc/loss_d_excess"``."""
    if series not in OSC_SERIES or stat not in OSC_STATS:
        raise KeyError(f"no oscillation metric for series {series!r} and stat {stat!r}: series {OSC_SERIES}, "
                       f"stats {OSC_STATS}")
    return f"osc/{series}_{stat}"


OSC_LOSS_D_STD, OSC_LOSS_D_PTP, OSC_LOSS_D_NOISE, OSC_LOSS_D_EXCESS, OSC_LOSS_D_TREND, OSC_LOSS_D_PERIOD, \
    OSC_LOSS_D_PERIOD_P = (osc_name("loss_d", s) for s in OSC_STATS)


def acc_name(prefix: str, which: str) -> str:
    """``<prefix>/<which>``: ``acc_name("acc_sign", "real") == "acc_sign/real"``."""
    name = f"{prefix}/{which}"
    if prefix not in ACC_PREFIXES or name not in REGISTRY:
        raise KeyError(f"no accuracy metric {name!r}: prefixes {ACC_PREFIXES}, real / fake / mean")
    return name


def acc_prefix(names: Iterable[str]) -> str:
    """The accuracies' prefix among logged ``names`` (a dict, columns, a list): ``acc``, or ``acc_sign`` for a
    critic, which logs the sign of its output instead of a thresholded probability."""
    keys = names if isinstance(names, (dict, set, frozenset)) else set(names)
    return "acc" if ACC_REAL in keys else "acc_sign"


def hp_name(key: str) -> str:
    """``hp/<key>`` for a key PBT mutates (``ganlab.config.MUTABLE_KEYS``), e.g. ``hp/optim.lr_ratio``."""
    name = f"hp/{key}"
    if name not in REGISTRY:
        raise KeyError(f"{key!r} is not a key PBT mutates ({', '.join(MUTABLE_KEYS)})")
    return name


def window_name(name: str) -> str:
    """``window/<metric>``: load_study's mean over the last logged steps of a registered metric."""
    metric(name)
    return WINDOW_PREFIX + name


def base_name(name: str) -> str:
    """The registered metric a derived name is computed from: ``base_name("window/loss/d") == "loss/d"``; a
    plain name is its own base."""
    return name.removeprefix(WINDOW_PREFIX)


# --- the registry, row by row of the README's table ----------------------------------------------------------

GROUPS: dict[str, Group] = {}


def _group(key: str, meaning: str, also: tuple[str, ...] = ()) -> str:
    GROUPS[key] = Group(meaning, also)
    return key


_g = _group("auc", "**D's ability to tell real from generated, for every loss**: the probability that D scores a "
           "random real sample of the batch above a random generated one (Mann-Whitney U over the batch's D outputs, "
           "ties half; at the logged iteration), its binomial-style noise floor (Hanley-McNeil std for that AUC and "
           "batch), and its mean over the window (what the verdict reads). Threshold-free and blind to D's offset and "
           "scale: 0.5 is the equilibrium for every loss, 1 a perfect D, below 0.5 a D that ranks fakes above reals")
_add(_g, "probability", "step",
     (D_AUC, "The probability that D scores a random real sample of the batch above a random generated one (ties "
             "half), at the logged iteration: 0.5 at the equilibrium for every loss, 1 a perfect D."),
     (D_AUC_NOISE, "The Hanley-McNeil standard deviation of that AUC for the batch: its noise floor."),
     (D_AUC_MEAN, "D's AUC averaged over the diagnostics window's logged iterations: the balance the verdict reads."))

_g = _group("accuracy", "D's accuracy on real and on generated samples (output above the loss's decision threshold "
           "means \"real\"), for the D that produced the outputs. Kept apart because a mean of 0.5 can hide 1.0 real / "
           "0.0 fake. **Meaningful for BCE losses and least squares**, whose D has a threshold (logit 0, output 0.5). "
           "Critics (`wgan`, `wgan_gp`, `hinge`) have none: their accuracy is the sign of the output, named "
           "`acc_sign/*`, and means little (a WGAN critic's offset is free: every output negative reads 0 real / 1 "
           "fake while it separates almost perfectly); read `d/auc` instead. Near 1/2 everywhere even a BCE D flips "
           "its thresholded accuracy on tiny offsets")
for _prefix, _how in (("acc", "above the loss's decision threshold"), ("acc_sign", "positive (a critic's sign)")):
    _add(_g, "fraction", "step",
         (f"{_prefix}/real", f"Fraction of real samples whose D output is {_how}, interval mean."),
         (f"{_prefix}/fake", f"Fraction of generated samples whose D output is not {_how}, interval mean."),
         (f"{_prefix}/mean", "The mean of the real and fake accuracies (1/2 can hide 1 real / 0 fake)."))

_g = _group("acc_gap", "\\|acc_real - 1/2\\| + \\|acc_fake - 1/2\\|: 0 at the equilibrium")
_add(_g, "fraction", "step", (EQ_ACC_GAP, "|acc_real - 1/2| + |acc_fake - 1/2|: D's accuracies' distance from the "
                                         "equilibrium's 50/50, 0 there."))

_g = _group("outputs", "mean raw D output on real / generated samples (interval mean); mean D probability (BCE "
           "losses; at the logged iteration)")
_add(_g, "D output", "step", (D_OUT_REAL, "Mean raw D output (a logit for BCE) on real samples, interval mean."),
     (D_OUT_FAKE, "Mean raw D output on generated samples, interval mean."))
_add(_g, "probability", "step", (D_PROB_REAL, "Mean D probability on real samples (BCE losses; at the logged iteration)."),
     (D_PROB_FAKE, "Mean D probability on generated samples (BCE losses; at the logged iteration)."))

_g = _group("losses", "losses, and their distance from the equilibrium values (2 ln 2 for the summed D BCE, ln 2 "
           "non-saturating G, -ln 2 minimax G)")
_add(_g, "loss units", "step", (LOSS_D, "D's loss (its regularizers apart), interval mean."),
     (LOSS_G, "G's loss, interval mean."),
     (EQ_LOSS_D_GAP, "D's loss minus its equilibrium value (2 ln 2 for the summed BCE); losses that have one."),
     (EQ_LOSS_G_GAP, "G's loss minus its equilibrium value (ln 2 non-saturating, -ln 2 minimax)."))

_SERIES_MEANING = {"loss_d": "D loss", "loss_g": "G loss", "acc_real": "D accuracy on real samples",
                   "acc_fake": "D accuracy on generated samples"}
_STAT_MEANING = {
    "std": "standard deviation of the per-iteration {s} over the last `diagnostics.window` iterations (game plus "
           "batch noise)",
    "ptp": "peak-to-peak amplitude of the per-iteration {s} over the window (game plus batch noise)",
    "noise": "the std of the {s} over the window that the batches' own sampling noise explains",
    "excess": "the std of the detrended {s} over the window that batch noise does not explain (floored at 0): the "
              "game's own motion, the same at any batch size",
    "trend": "change of the straight-line fit of the {s} across the window: a drift, not an oscillation",
    "period": "the dominant period of the detrended {s} (iterations), NaN unless Fisher's g-test gives p < "
              "`diagnostics.period_alpha`",
    "period_p": "Fisher's g-test p-value of the {s}'s periodogram peak against white noise",
}
_g_spread = _group("osc_spread", "for `loss_d`, `loss_g`, `acc_real`, `acc_fake`: standard deviation and "
                  "peak-to-peak amplitude of the per-iteration series over the last `diagnostics.window` iterations "
                  "(game plus batch noise)")
_g_noise = _group("osc_noise", "**the oscillation beyond minibatch noise**: `noise` is the std the batches' own "
                 "sampling noise explains (each step's per-sample variance over B for a loss, p(1-p)/(B-1) for an "
                 "accuracy, averaged over the window), `excess` the std it does not explain (of the detrended window, "
                 "floored at 0): the game's own motion, the same at any batch size")
_g_trend = _group("osc_trend", "change of the window's straight-line fit across the window: a drift, not an oscillation")
_g_period = _group("osc_period", "the dominant period (iterations, read at 8x frequency resolution) **only when there "
                  "is one**: Fisher's g-test of the detrended periodogram's peak against white noise gives `period_p`; "
                  "`period` is NaN unless p < `diagnostics.period_alpha` (0.01). Periods that fit fewer than "
                  "`period_min_cycles` (3) times in the window are a drift, not tested")
_STAT_GROUP = {"std": _g_spread, "ptp": _g_spread, "noise": _g_noise, "excess": _g_noise, "trend": _g_trend,
               "period": _g_period, "period_p": _g_period}
for _stat in OSC_STATS:
    for _series in OSC_SERIES:
        _unit = {"period": "iterations", "period_p": "probability"}.get(
            _stat, "loss units" if _series.startswith("loss") else "fraction")
        _add(_STAT_GROUP[_stat], _unit, "step",
             (osc_name(_series, _stat), _STAT_MEANING[_stat].format(s=_SERIES_MEANING[_series]).capitalize() + "."))

_g = _group("osc_zcr", "zero-crossing rate of E D(x) - E D(G(z)) around its median over the window")
_add(_g, "fraction", "step", (OSC_DELTA_ZCR, "Sign changes per iteration of E D(x) - E D(G(z)) around its median "
                                            "over the window: high for a fast see-saw."))

_g = _group("norms", "gradient norms (at the logged iteration: sampled, to keep per-step cost low), parameter norms, "
           "update-to-weight ratio over the log interval, value of D's regularizers")
_add(_g, "L2 norm", "step", (GRAD_D, "Norm of D's loss gradient (at the logged iteration)."),
     (GRAD_G, "Norm of G's loss gradient (at the logged iteration; per-step diagnostics only)."),
     (PARAM_D, "Norm of D's parameters."), (PARAM_G, "Norm of G's parameters."))
_add(_g, "ratio", "step", (UPDATE_D, "How far D's parameters moved over the log interval, relative to their norm."),
     (UPDATE_G, "How far G's parameters moved over the log interval, relative to their norm."))
_add(_g, "loss units", "step", (REG_D, "Value of D's regularizers (R1, R2, gradient penalty), interval mean."))

_g = _group("mixture", "mixtures, on `eval_samples` fresh samples: modes covered, fraction within `hq_sigmas` sigmas of "
           "the nearest mode, KL(mode histogram of HQ samples ‖ uniform) (VEEGAN/PacGAN protocol; NaN when no sample "
           "is high quality)")
_add(_g, "count", "eval", (EVAL_MODES, "Modes covered by the generated samples (mixtures), or classes (digits, 10) "
                                      "and class triples (stacked digits, 1000) the classifier finds among them."))
_add(_g, "fraction", "eval", (EVAL_HQ_FRACTION, "Fraction of generated samples within `hq_sigmas` sigmas of their "
                                               "nearest mode (mixtures)."))
_add(_g, "nats", "eval", (EVAL_REVERSE_KL, "KL(histogram of the samples' modes or classes ‖ uniform): 0 when every "
                                          "mode is hit equally often; NaN when no sample is high quality."))

_g = _group("points", "point data: sliced 1-Wasserstein distance to as many fresh data samples (64 directions)")
_add(_g, "data units", "eval", (EVAL_SLICED_W, "Sliced 1-Wasserstein distance between generated and as many fresh "
                                              "data samples (64 random directions)."))

_g = _group("digits", "digits and stacked digits: Frechet distance in the features of a small digit classifier (trained "
           "once, seeded, cached in `~/.cache/ganlab` or `$GANLAB_CACHE`; its held-out accuracy, ~0.97, is logged with "
           "it), the sample count, and classes (digits, 10) or class triples (stacked digits, 1000) covered",
           also=(EVAL_MODES, EVAL_REVERSE_KL))
_add(_g, "squared feature distance", "eval", (EVAL_FD, "Frechet distance between generated and real digits in the "
                                                      "digit classifier's features."))
_add(_g, "count", "eval", (EVAL_FD_N, "Samples the Frechet distance was computed on."))
_add(_g, "fraction", "eval", (EVAL_CLASSIFIER_ACC, "The digit classifier's held-out accuracy (what the FD and class "
                                                  "coverage are read with)."))

_g = _group("probe", "opt-in (`diagnostics.d_probe: true`), digits: held-out accuracy of a logistic regression on D's "
           "penultimate features (the FD classifier's 80/20 split), next to the same probe on D as initialised (what "
           "training added)")
_add(_g, "fraction", "eval", (EVAL_D_PROBE_ACC, "Held-out accuracy of a logistic regression on the trained D's "
                                               "penultimate features."),
     (EVAL_D_PROBE_ACC_RANDOM, "The same probe on D as initialised: the baseline the trained D is compared with."))

_g = _group("dirac", "Dirac-GAN: the players' parameters and their distance to the equilibrium (0, 0)")
_add(_g, "parameter", "eval", (EVAL_DIRAC_THETA, "The Dirac-GAN generator's parameter theta (0 at the equilibrium)."),
     (EVAL_DIRAC_PSI, "The Dirac-GAN discriminator's parameter psi (0 at the equilibrium)."))
_add(_g, "L2 norm", "eval", (EVAL_DIRAC_DISTANCE, "||(theta, psi)||: the Dirac-GAN's distance to its equilibrium (0, 0)."))

_g = _group("jacobian", "opt-in (`diagnostics.jacobian: true`), costly: eigenvalues of the game's Jacobian of the "
           "update field by Hessian-vector products (full matrix for small games, ARPACK otherwise). Max real part < "
           "0: locally attracting; large imaginary part: rotation. On the Dirac-GAN: ±0.5i unregularized, -0.15 ± "
           "0.477i with R1 gamma 0.3 (tested)")
_add(_g, "eigenvalue", "eval", (EVAL_JAC_MAX_REAL, "Largest real part of the game Jacobian's eigenvalues: < 0 locally "
                                                  "attracting."),
     (EVAL_JAC_MAX_IMAG, "Largest |imaginary part| of the Jacobian's eigenvalues: rotation."))
_add(_g, "ratio", "eval", (EVAL_JAC_ROTATION, "|Im| / |Re| of the eigenvalue of largest real part: rotation against "
                                             "attraction."))

_g = _group("duality_gap", "opt-in (`diagnostics.duality_gap: true`, with `duality_gap_steps`, `duality_gap_lr`, "
           "`duality_gap_box`): Grnarova et al.'s gap, max_D' M(G, D') - min_G' M(G', D) with M = D's objective, each "
           "inner problem solved approximately (so the estimate is from below); 0 at a Nash equilibrium. Checked "
           "against the Dirac-GAN's closed form in a box")
_add(_g, "loss units", "eval", (EVAL_DUALITY_GAP, "Grnarova et al.'s duality gap, estimated from below: 0 at a Nash "
                                                 "equilibrium."))

_g = _group("progress", "x-axes that compare runs with different update schedules")
_add(_g, "count", "step", (PROGRESS_G_STEPS, "G updates so far."), (PROGRESS_D_STEPS, "D updates so far."),
     (PROGRESS_REAL_SAMPLES, "Real samples D has seen so far (D updates x batch size)."))

_g = _group("cost", "what a trial costs, logged by the study at each report (in a pack, each trial's share: the pack's "
           "time over its lanes): compute and logging seconds so far, seconds per iteration, real samples per second, "
           "the worker's peak resident memory, the pack's lane count, and on CUDA the peak allocated GPU memory")
_add(_g, "s", "trial", (COST_COMPUTE_S, "Training seconds so far (the trial's share of its pack's)."),
     (COST_IO_S, "Seconds spent logging so far (the trial's share)."))
_add(_g, "s/iteration", "trial", (COST_S_PER_STEP, "Seconds per training iteration in the last report interval."))
_add(_g, "samples/s", "trial", (COST_SAMPLES_PER_S, "Real samples per second in the last report interval."))
_add(_g, "MiB", "trial", (COST_PEAK_RSS_MB, "The worker process's peak resident memory (a pack's, for a packed trial)."))
_add(_g, "count", "trial", (COST_PACK_LANES, "Trials trained together in this trial's pack."))
_add(_g, "MiB", "trial", (COST_CUDA_MAX_ALLOCATED_MB, "Peak GPU memory allocated by torch (CUDA only)."))

_g = _group("hp", "PBT only: what a trial trains with now (PBT changes it mid-run, so it is a metric, not a param): "
           "each mutated key as `hp/<key>` (e.g. `hp/optim.lr_ratio`), and the learning rates read back from the "
           "optimisers")
_add(_g, "learning rate", "trial", (HP_LR_G, "G's learning rate, read back from its optimiser."),
     (HP_LR_D, "D's learning rate, read back from its optimiser."))
for _key in MUTABLE_KEYS:
    _add(_g, "config value", "trial", (f"hp/{_key}", f"The current value of `{_key}` (PBT mutates it)."))

# The headline diagnostics the MLflow UI charts for every trial, at chart resolution (``chart_points`` points
# per trial, every eval step, the last step); every other metric reaches MLflow at eval steps and the last step,
# and every logged step of every metric is in the trial's diagnostics.parquet.
CHART = (LOSS_D, LOSS_G, D_AUC, ACC_REAL, ACC_FAKE, ACC_SIGN_REAL, ACC_SIGN_FAKE, EQ_ACC_GAP, OSC_LOSS_D_EXCESS,
         osc_name("loss_g", "excess"), GRAD_D, GRAD_G)

DERIVED = {WINDOW_PREFIX + "<metric>": "`load_study` only: the mean over the last 20% of a trial's logged steps (of D "
           "accuracy, equilibrium gap and losses by default: a final value is one log interval)"}
del _g, _prefix, _how, _stat, _series, _unit, _key


# --- reading it ----------------------------------------------------------------------------------------------

def registered(name: str) -> bool:
    """Is ``name`` a registered metric, or derived from one (``window/<metric>``)?"""
    return base_name(name) in REGISTRY


def metric(name: str) -> Metric:
    """The registered metric ``name`` (a ``window/<metric>`` gives its base's entry, as derived); a KeyError
    that names the closest registered names otherwise."""
    base = base_name(name)
    if base in REGISTRY:
        m = REGISTRY[base]
        if base == name:
            return m
        return Metric(name, f"Mean over the last logged steps of {base}: {m.meaning}", m.unit, "derived", "window")
    close = difflib.get_close_matches(base, list(REGISTRY), n=4, cutoff=0.6)
    hint = f"closest: {', '.join(close)}" if close else f"registered: {', '.join(sorted({n.split('/')[0] for n in REGISTRY}))}/*"
    raise KeyError(f"{name!r} is not a registered metric ({hint}); register it in ganlab/diagnose/metrics.py")


def names(cadence: str | None = None) -> tuple[str, ...]:
    """Every registered name (of one cadence), in the registry's order."""
    if cadence is not None and cadence not in CADENCES:
        raise ValueError(f"cadence {cadence!r}: one of {', '.join(CADENCES)}")
    return tuple(n for n, m in REGISTRY.items() if cadence is None or m.cadence == cadence)


def _shown(row: list[str]) -> list[str]:
    """A row's names as the table shows them: ``osc/<series>_<stat>`` once per stat (the first in full, then
    ``_<stat>``), ``hp/<key>`` once for every key PBT mutates."""
    out: list[str] = []
    for name in row:
        head, _, tail = name.partition("/")
        series = next((s for s in OSC_SERIES if tail.startswith(s + "_")), None) if head == "osc" else None
        if series is not None:
            stat = tail[len(series) + 1:]
            shown = f"`_{stat}`" if any(o.startswith("`osc/<series>_") for o in out) else f"`osc/<series>_{stat}`"
            if f"`osc/<series>_{stat}`" in out:
                continue
        elif head == "hp" and tail in MUTABLE_KEYS:
            shown = "`hp/<key>`"
        else:
            shown = f"`{name}`"
        if shown not in out:
            out.append(shown)
    return out


def _distinct(values: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(values))


def markdown_table() -> str:
    """The README's metric table, a row per group in GROUPS' order: names, meaning, unit(s), cadence(s)."""
    lines = ["| metric | meaning | unit | cadence |", "|---|---|---|---|"]
    for key, group in GROUPS.items():
        rows = [m for m in REGISTRY.values() if m.group == key]
        shown = _shown([m.name for m in rows] + list(group.also))
        lines.append(f"| {', '.join(shown)} | {group.meaning} | {_distinct(m.unit for m in rows)} | "
                     f"{_distinct(m.cadence for m in rows)} |")
    for pattern, meaning in DERIVED.items():
        lines.append(f"| `{pattern}` | {meaning} | the metric's | derived |")
    legend = "; ".join(f"`{c}`: {text}" for c, text in CADENCES.items())
    return "\n".join(lines) + f"\n\nCadence: {legend}."


BEGIN, END = "<!-- metrics:begin -->", "<!-- metrics:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def with_table(text: str) -> str:
    """``text`` (the README) with the section between the markers replaced by ``markdown_table()``."""
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the README has no {BEGIN} ... {END} section")
    return f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Rewrites the README's metric table from the registry (``--check``: exit 1 if it differs)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(next((a for a in args if not a.startswith("-")), README))
    text = path.read_text()
    new = with_table(text)
    if "--check" in args:
        print(f"{path}: the metric table is {'up to date' if new == text else 'out of date'}")
        return int(new != text)
    if new != text:
        path.write_text(new)
    print(f"{path}: metric table {'rewritten' if new != text else 'up to date'} ({len(REGISTRY)} metrics)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
