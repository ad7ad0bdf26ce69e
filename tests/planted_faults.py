"""Planted faults: tests that pass on correct code must fail on wrong code.

Each fault below changes one line of ganlab (a formula, a threshold, a sign, a comparison) the way a slip of
the keyboard would. The runner applies them one at a time to a scratch copy of the package, runs the fast
tests that cover that code, and reports which faults the tests *killed* (some test failed) and which
*survived* (every test passed: a hole in the suite). None may survive; when code changes, its faults change
with it (tests/test_planted_faults.py fails on a fault whose line no longer exists).

    .venv/bin/python tests/planted_faults.py [--jobs 2] [--only SUBSTRING]

Prints a table and exits 1 if any fault survived.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Fault:
    file: str  # under ganlab/
    original: str  # text that occurs exactly once in the file
    planted: str  # what it becomes
    tests: str  # space-separated test paths (or node ids) that must catch it
    what: str  # the slip, in words


FAULTS = [
    # --- losses ---------------------------------------------------------------------------------------------
    Fault("train/losses.py", 'DECISION_THRESHOLD = {"least_squares": 0.5}', 'DECISION_THRESHOLD = {"least_squares": 0.0}',
          "tests/train/test_trainer_metrics.py", "LSGAN decides real/fake at 0 instead of 0.5"),
    Fault("train/losses.py", '"minimax": (2 * math.log(2), -math.log(2))', '"minimax": (2 * math.log(2), math.log(2))',
          "tests/train/test_trainer_metrics.py tests/train/test_losses.py", "minimax G equilibrium loss sign flipped"),
    Fault("train/losses.py", "return F.softplus(-real), F.softplus(fake)  # -log D(x)",
          "return F.softplus(real), F.softplus(fake)  # -log D(x)", "tests/train/test_losses.py",
          "BCE D loss on real samples with the wrong sign"),
    Fault("train/losses.py", "return -real, fake\n", "return real, -fake\n",
          "tests/train/test_losses.py tests/train/test_dirac.py", "WGAN critic maximises the wrong difference"),
    Fault("train/losses.py", "return F.relu(1 - real), F.relu(1 + fake)",
          "return F.relu(1 - real), F.relu(1 - fake)", "tests/train/test_losses.py", "hinge margin on fakes"),
    Fault("train/losses.py", "return 0.5 * (real - 1).pow(2), 0.5 * fake.pow(2)",
          "return 0.5 * (real - 1).pow(2), 0.5 * (fake - 1).pow(2)", "tests/train/test_losses.py",
          "LSGAN fake target 1 instead of 0"),
    Fault("train/losses.py", "return F.softplus(-fake)  # -log D(G(z))", "return F.softplus(fake)  # -log D(G(z))",
          "tests/train/test_losses.py tests/train/test_trainer_metrics.py", "non-saturating G loss sign"),
    # --- regularizers ---------------------------------------------------------------------------------------
    Fault("train/regularizers.py", "return 0.5 * gamma * grad_sq_norm(outputs, inputs).mean(-1)",
          "return gamma * grad_sq_norm(outputs, inputs).mean(-1)", "tests/train/test_regularizers.py tests/train/test_dirac.py",
          "R1/R2 without the paper's 1/2"),
    Fault("train/regularizers.py", "return weight * (norms - _against(center, norms)).pow(2).mean(-1)",
          "return weight * (norms - _against(center, norms)).abs().mean(-1)", "tests/train/test_regularizers.py", "GP penalty not squared"),
    Fault("train/regularizers.py", "decay = (1.0 - iteration / anneal.clamp(min=1).to(sigma.dtype)).clamp(min=0.0)",
          "decay = (1.0 - anneal.to(sigma.dtype) / max(iteration, 1)).clamp(min=0.0)", "tests/train/test_regularizers.py",
          "instance noise annealed the wrong way"),
    # --- the trainer's own figures ----------------------------------------------------------------------------
    Fault("diagnose/balance.py", "return abs(acc_real - 0.5) + abs(acc_fake - 0.5)",
          "return abs((acc_real + acc_fake) / 2 - 0.5)", "tests/train/test_trainer_metrics.py",
          "equilibrium gap of the mean accuracy (hides 1.0 real / 0.0 fake)"),
    Fault("train/recorder.py", "metrics[update] = (flat - previous).norm(dim=1) / previous.norm(dim=1).clamp(min=1e-12)",
          "metrics[update] = (flat - previous).norm(dim=1) / flat.norm(dim=1).clamp(min=1e-12)",
          "tests/train/test_trainer_metrics.py tests/train/test_recorder.py", "update ratio over the new weights"),
    Fault("train/trainer.py", "(M.PROGRESS_REAL_SAMPLES, self.d_steps * b)", "(M.PROGRESS_REAL_SAMPLES, self.g_steps * b)",
          "tests/train/test_trainer.py", "real samples counted by G steps"),
    # --- the trainer's parts ---------------------------------------------------------------------------------
    Fault("train/recorder.py", "mean(0) * torch.tensor([1.0, 1.0 / len(steps)]", "mean(0) * torch.tensor([1.0, 1.0]",
          "tests/train/test_recorder.py", "a mean of k steps keeps their whole noise variance"),
    Fault("train/recorder.py", "acc_fake, binomial_var(acc_fake, fake_out.shape[-1])]  # D_SERIES",
          "acc_real, binomial_var(acc_real, fake_out.shape[-1])]  # D_SERIES",
          "tests/train/test_recorder.py", "the real accuracy recorded into the fake series"),
    Fault("train/judge.py", "stopped = torch.tensor([w is not None for w in why]) & live",
          "stopped = torch.tensor([w is not None for w in why])", "tests/train/test_judge.py",
          "a lane stopped earlier stops again at every later blow-up"),
    Fault("train/judge.py", "self.latest[:, index] = torch.where(live.reshape(-1, 1), values, self.latest[:, index])",
          "self.latest[:, index] = values", "tests/train/test_judge.py", "a stopped lane's figures keep changing"),
    Fault("diagnose/verdict.py", "flag(v.abs() > cfg.explode_loss,", "flag(v.abs() < cfg.explode_loss,",
          "tests/train/test_judge.py", "exploding losses read the wrong way round"),
    Fault("train/objective.py", "reg = reg + zero_centered_penalty(fake_out, fake_in, penalties.r2)",
          "reg = reg + zero_centered_penalty(fake_out, fake_in, penalties.r1)", "tests/train/test_objective.py",
          "R2 with R1's strength"),
    Fault("train/evaluation.py", "r1=torch.tensor(r.r1) if r.r1 > 0 else None, r2=torch.tensor(r.r2) if r.r2 > 0 else None,",
          "r1=torch.tensor(r.r1) if r.r1 > 0 else None, r2=None,", "tests/train/test_objective.py",
          "the analyses' game forgets R2 (a second D objective)"),
    Fault("train/lanes.py", 'return tuple(c.optim.betas_d or c.optim.betas) if player == "d" else tuple(c.optim.betas)',
          'return tuple(c.optim.betas) if player == "d" else tuple(c.optim.betas)', "tests/train/test_lanes.py",
          "D's own betas ignored"),
    Fault("train/pack.py", "self.ema_player.flat.copy_(torch.where(active.reshape(-1, 1), ema, self.ema_player.flat))",
          "self.ema_player.flat.copy_(ema)", "tests/train/test_pack.py", "an inactive lane's EMA keeps moving"),
    Fault("diagnose/balance.py", "return (real_logits > 0).double().mean(), (fake_logits < 0).double().mean()",
          "return (real_logits > 0).double().mean(), (fake_logits > 0).double().mean()",
          "tests/diagnose/test_balance.py tests/train/test_trainer_metrics.py", "accuracy on fakes counts fakes called real"),
    # --- sample quality -----------------------------------------------------------------------------------------
    Fault("diagnose/samples.py", "hq = (nearest_dist <= hq_sigmas * sigma).double()", "hq = (nearest_dist <= hq_sigmas).double()",
          "tests/diagnose/test_samples.py", "high quality in absolute units, not sigmas"),
    Fault("diagnose/samples.py", "math.log(means.shape[1]) - _entropy(counts)",
          "math.log(means.shape[1]) + _entropy(counts)", "tests/diagnose/test_samples.py", "reverse KL sign"),
    Fault("diagnose/samples.py", "return (px - py).abs().mean(dim=(1, 2))", "return (px - py).pow(2).mean(dim=(1, 2))",
          "tests/diagnose/test_samples.py", "sliced W2 squared instead of W1"),
    Fault("diagnose/samples.py", "fd = (mu1 - mu2).pow(2).sum(-1) + trace - 2 * w.sqrt().sum(-1)",
          "fd = (mu1 - mu2).pow(2).sum(-1) + trace - w.sqrt().sum(-1)",
          "tests/diagnose/test_samples.py", "Frechet distance without the factor 2"),
    # --- equilibrium ----------------------------------------------------------------------------------------------
    Fault("diagnose/equilibrium.py", "return -torch.cat([g.reshape(-1) for g in (*grads_g, *grads_d)]), params",
          "return torch.cat([g.reshape(-1) for g in (*grads_g, *grads_d)]), params", "tests/diagnose/test_equilibrium.py",
          "update field without the descent sign"),
    Fault("diagnose/equilibrium.py", 'best_d = best_response(D_worst, lambda: objective(G, D_worst), sign=-1.0)',
          'best_d = best_response(D_worst, lambda: objective(G, D_worst), sign=+1.0)', "tests/diagnose/test_equilibrium.py",
          "duality gap's D minimises its objective"),
    Fault("diagnose/equilibrium.py", '"jac_max_imag": float(np.abs(eigenvalues.imag).max()),',
          '"jac_max_imag": float(eigenvalues.imag.min()),', "tests/diagnose/test_equilibrium.py",
          "rotation read from the wrong imaginary part"),
    # --- search, schedulers, confirmation ---------------------------------------------------------------------------
    Fault("config/study.py", "            value = min(max(value, low), high)", "            value = max(value, low)",
          "tests/config/test_study.py", "PBT perturbation not clamped above"),
    Fault("config/loading.py", "        return float(value)\n", "        return value\n", "tests/config/test_loading.py",
          "a float key's integer grid left integer (PBT rounds it)"),
    Fault("config/study.py", 'trial = resolved if seed is None else {**resolved, "seed": seed}',
          'trial = resolved if seed is None else {**resolved}', "tests/config/test_study.py tests/study/test_search.py",
          "seeds dropped from grid points"),
    Fault("study/confirm.py", 'ranking = ranking.sort_values("objective", ascending=mode == "min", na_position="last").head(top)',
          'ranking = ranking.sort_values("objective", ascending=mode == "max", na_position="last").head(top)',
          "tests/study/test_search.py", "confirmation ranks the worst first"),
    Fault("study/confirm.py", "first_new = int(frame[\"seed\"].max()) + 1", "first_new = int(frame[\"seed\"].max())",
          "tests/study/test_search.py", "confirmation reuses a search seed"),
    Fault("study/progress.py", "    pending = max(0, total - n_ended - n(errored) - n(running) - n(paused))",
          "    pending = max(0, total - n_ended - n(running) - n(paused))", "tests/study/test_progress.py",
          "failed trials counted as pending too"),
    Fault("study/search.py", "        if saving and cached.get(trial.trial_id) == TrialScheduler.STOP:",
          "        if saving and cached.get(trial.trial_id) == TrialScheduler.PAUSE:",
          "tests/study/test_search.py::test_synced_pbt_neither_ends_a_member_cloned_mid_save_nor_stalls_when_a_member_leaves",
          "PBT member cloned mid-save keeps Tune's stale STOP (ended at its next checkpoint)"),
    Fault("study/search.py", "            custom_explore_fn=BoundedExplore(s),", "            custom_explore_fn=None,",
          "tests/study/test_search.py::test_pbt_explores_inside_each_mutations_range",
          "PBT's own copy of a perturbed value left outside its range"),
    Fault("study/runner.py", '            newest[TUNE_TIMESTAMP.sub("", path.name)] = path',
          '            newest.setdefault(TUNE_TIMESTAMP.sub("", path.name), path)', "tests/study/test_runner.py",
          "resume checks the oldest session's Tune state, not the newest Tune restores from"),
    Fault("study/runner.py", "            return path\n    return None", "            pass\n    return None",
          "tests/study/test_runner.py", "a cut-short pickle of Tune's state passes the resume check"),
    # --- packs ----------------------------------------------------------------------------------------------------
    Fault("study/packs.py", "        size = max(1, min(study.pack_max, math.ceil(len(points) / slots)))",
          "        size = max(1, min(study.pack_max, len(points) // slots))",
          "tests/study/test_packs.py::test_packs_hold_one_shape_and_fill_the_slots_evenly",
          "auto pack size rounded down (a slot gets a second, small pack)"),
    Fault("study/progress.py", "    n_ended = n(ended) + sum(lanes_done.get(i, 0) for i in running | paused)",
          "    n_ended = n(ended)", "tests/study/test_packs.py::test_counts_add_up_in_trials_when_packs_hold_several",
          "trials that ended inside a running pack not counted done"),
    # --- analysis ---------------------------------------------------------------------------------------------------
    Fault("analysis/tables.py", "    z = stats.norm.ppf(0.5 + confidence / 2)", "    z = stats.norm.ppf(confidence)",
          "tests/analysis/test_analysis.py", "Wilson interval with a one-sided z"),
    Fault("analysis/tables.py", 't = agg["count"].map(lambda n: stats.t.ppf(0.5 + confidence / 2, n - 1) if n > 1 else float("nan"))',
          't = agg["count"].map(lambda n: stats.t.ppf(0.5 + confidence / 2, n) if n > 1 else float("nan"))',
          "tests/analysis/test_analysis.py", "Student-t with n degrees of freedom"),
    Fault("analysis/tables.py", 'out[f"{metric} ci"] = t * agg["std"] / agg["count"].pow(0.5)',
          'out[f"{metric} ci"] = t * agg["std"] / agg["count"]', "tests/analysis/test_analysis.py",
          "interval half-width over n instead of sqrt(n)"),
    Fault("analysis/tables.py", 'out[f"rate {verdict}"] = counts[verdict] / out["seeds"]',
          'out[f"rate {verdict}"] = counts[verdict] / out["seeds"].max()', "tests/analysis/test_analysis.py",
          "rates over the largest group, not the configuration's seeds"),
    Fault("analysis/trials.py", 'mode = mode or METRIC_MODES.get(M.base_name(metric), "min")',
          'mode = mode or METRIC_MODES.get(metric, "min")', "tests/analysis/test_best.py",
          "windowed coverage metrics minimised"),
    Fault("analysis/trials.py", 'candidates = df[(df["trial_status"] == "finished") & df[metric].map(lambda v: v is not None and math.isfinite(v))]',
          'candidates = df[df[metric].map(lambda v: v is not None and math.isfinite(v))]', "tests/analysis/test_best.py",
          "diverged and stopped trials are candidates for best"),
    # --- tracking -------------------------------------------------------------------------------------------------
    Fault("track/writer.py", "if not stored or step > stored.get(names[c], -1))", "if True)", "tests/track/test_writer.py",
          "a pack restarted after a kill mid-flush stores the points that arrived a second time"),
    Fault("track/writer.py", "keep = [i for i, lane in enumerate(lanes) if step > self.lanes[lane].logged_through]",
          "keep = list(range(len(lanes)))", "tests/track/test_writer.py",
          "a restarted pack stores the steps before its checkpoint again"),
    Fault("track/writer.py", "keep = frame[\"step\"].to_numpy() <= frame[\"run_id\"].map(through).fillna(-1).to_numpy()",
          "keep = frame[\"step\"].to_numpy() < frame[\"run_id\"].map(through).fillna(-1).to_numpy()",
          "tests/track/test_writer.py", "a restarted pack's diagnostics.parquet loses the step of its last flush"),
    Fault("track/history.py", 'merged = frame[frame["run_id"].isin(out.keys())].groupby(["run_id", "step"], sort=True).last()',
          'merged = frame[frame["run_id"].isin(out.keys())].groupby(["run_id", "step"], sort=True).first()',
          "tests/track/test_history.py",
          "a step stored again (restart, PBT clone) keeps its old values in diagnostics.parquet"),
    Fault("track/sql.py", "if best is None or order > best[0]:", "if best is None or order < best[0]:",
          "tests/track/test_sql.py", "bulk writes keep the earliest point as a metric's latest value"),
    Fault("track/sql.py", "elif (step, timestamp, value) > (old.step, old.timestamp, old.value):",
          "elif (step, timestamp) > (old.step, old.timestamp):", "tests/track/test_sql.py",
          "a tie at one step and timestamp keeps the stored latest value, not the larger one MLflow keeps"),
    Fault("track/sql.py", "is_nan, stored = sanitize(float(value))", "is_nan, stored = False, float(value)",
          "tests/track/test_sql.py", "NaN and infinities stored raw, not as MLflow stores them"),
    Fault("track/store.py", "                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
          "                pass\n", "tests/track/test_store.py",
          "a new SQLite store created without the lock: concurrent first commands race in MLflow's schema set-up"),
    # --- packed optimisers: torch.optim's rules, lane by lane ------------------------------------------------------
    Fault("train/optim.py", 'torch.lerp(s["exp_avg"], g, 1 - beta1)', 'torch.lerp(s["exp_avg"], g, beta1)',
          "tests/train/test_optim.py", "Adam's first moment moves by beta1 instead of 1 - beta1"),
    Fault("train/optim.py", "correction2_sqrt = (1 - beta2 ** step).sqrt()", "correction2_sqrt = 1 - beta2 ** step",
          "tests/train/test_optim.py", "Adam's second bias correction without its square root"),
    Fault("train/optim.py", "denom = exp_avg_sq.sqrt() / correction2_sqrt + ADAM_EPS",
          "denom = (exp_avg_sq.sqrt() + ADAM_EPS) / correction2_sqrt", "tests/train/test_optim.py",
          "Adam's eps added before the bias correction (torch adds it after)"),
    Fault("train/optim.py", 's["square_avg"] * alpha + (1 - alpha) * g * g', 's["square_avg"] * (1 - alpha) + alpha * g * g',
          "tests/train/test_optim.py", "RMSprop's square average weighs the new gradient by alpha, not 1 - alpha"),
    Fault("train/optim.py", 's["momentum_buffer"] * momentum + direction',
          's["momentum_buffer"] * momentum + (1 - momentum) * direction', "tests/train/test_optim.py",
          "RMSprop's momentum buffer dampened like an average (torch's is not)"),
    Fault("train/optim.py", 's["momentum_buffer"] * momentum + g)', 's["momentum_buffer"] * momentum + (1 - momentum) * g)',
          "tests/train/test_optim.py", "SGD's momentum buffer dampened (torch's adds the gradient itself)"),
    Fault("train/checkpoint.py", '    trainer.judge.load_state_dict(state["judge"])\n', "",
          "tests/train/test_checkpoint.py", "a resumed pack forgets which lanes stopped"),
    Fault("train/optim.py", "p.copy_(torch.where(keep, p, new))", "p.copy_(new)", "tests/train/test_optim.py",
          "an inactive lane's parameters still step"),
    Fault("train/optim.py", 'exp_avg = torch.where(keep, s["exp_avg"], torch.lerp(s["exp_avg"], g, 1 - beta1))',
          'exp_avg = torch.lerp(s["exp_avg"], g, 1 - beta1)', "tests/train/test_optim.py",
          "an inactive lane's Adam first moment still moves"),
    Fault("train/optim.py", 'buf = torch.where(keep, s["momentum_buffer"], s["momentum_buffer"] * momentum + g)',
          'buf = s["momentum_buffer"] * momentum + g', "tests/train/test_optim.py",
          "an inactive lane's SGD momentum buffer still moves"),
    Fault("train/optim.py", "self.steps += active.to(self.steps.dtype)", "self.steps += 1", "tests/train/test_optim.py",
          "an inactive lane's steps counted (its bias correction runs ahead of torch's)"),
    # --- packed layers: torch's modules, lane by lane -----------------------------------------------------------------
    Fault("train/packed.py", "torch.baddbmm(self.bias.unsqueeze(1), x, w.transpose(1, 2))",
          "torch.baddbmm(self.bias.unsqueeze(1), x, w)",
          "tests/train/test_packed.py::test_packed_linear_is_torchs_linear_lane_by_lane",
          "a linear layer multiplies by W, not its transpose (silent for square weights)"),
    Fault("train/packed.py", "torch.baddbmm(self.bias.unsqueeze(1), x,", "torch.baddbmm(self.bias.flip(0).unsqueeze(1), x,",
          "tests/train/test_packed.py::test_packed_linear_is_torchs_linear_lane_by_lane",
          "a linear layer adds another lane's bias"),
    Fault("train/packed.py", "self.maps, self.eps, self.momentum = maps, single.eps, single.momentum",
          "self.maps, self.eps, self.momentum = maps, single.eps, 0.1",
          "tests/train/test_packed.py::test_packed_batch_norm_1d_is_torchs_lane_by_lane",
          "batch norm's momentum ignored (torch's default 0.1 instead)"),
    Fault("train/packed.py", "flat(self.bias), self.training, self.momentum, self.eps)",
          "flat(self.bias), self.training, self.eps, self.momentum)",
          "tests/train/test_packed.py::test_packed_batch_norm_2d_is_torchs_lane_by_lane",
          "batch norm of maps with momentum and eps swapped"),
    Fault("train/packed.py", "x.transpose(0, 1).reshape(batch, lanes * c)", "x.reshape(batch, lanes * c)",
          "tests/train/test_packed.py::test_packed_batch_norm_1d_is_torchs_lane_by_lane",
          "batch norm of (L, B, C) features without the transpose: lanes and samples mixed"),
    Fault("train/packed.py", "self.weight.unsqueeze(1) + self.bias.unsqueeze(1)",
          "self.weight.unsqueeze(1) + self.bias[:1].unsqueeze(1)",
          "tests/train/test_packed.py::test_packed_layer_norm_is_torchs_lane_by_lane",
          "every lane's layer norm adds lane 0's bias"),
    Fault("train/packed.py", "torch.bmm(mat.transpose(1, 2), u.unsqueeze(2))",
          "torch.bmm(mat.transpose(1, 2), sn._u.unsqueeze(2))",
          "tests/train/test_packed.py::test_packed_spectral_norm_is_torchs_parametrization_lane_by_lane",
          "spectral norm's power iteration takes v from the previous u"),
    Fault("train/packed.py", "torch.bmm(mat.transpose(1, 2), u.unsqueeze(2))", "torch.bmm(mat, u.unsqueeze(2))",
          "tests/train/test_packed.py::test_packed_spectral_norm_is_torchs_parametrization_lane_by_lane",
          "spectral norm's power iteration without W's transpose (silent for square weights)"),
    Fault("train/packed.py", "sn_dim = (1 if self.transposed else 0) if spectral else None",
          "sn_dim = 0 if spectral else None",
          "tests/train/test_packed.py::test_packed_spectral_norm_is_torchs_parametrization_lane_by_lane",
          "a transposed convolution spectrally normalised along dim 0 (torch's takes dim 1)"),
    Fault("train/packed.py", "F.conv2d(x, w, bias, self.stride, self.padding, groups=self.lanes)",
          "F.conv2d(x, w, bias, self.stride, self.padding, groups=1)",
          "tests/train/test_packed.py::test_packed_conv_is_torchs_conv_lane_by_lane",
          "a packed convolution not grouped by lane"),
    # --- the metric registry ------------------------------------------------------------------------------------
    Fault("diagnose/metrics.py", 'D_AUC, D_AUC_NOISE, D_AUC_MEAN = "d/auc", "d/auc_noise", "d/auc_mean"',
          'D_AUC, D_AUC_NOISE, D_AUC_MEAN = "d/auc", "d/auc_noise", "d/auc_man"', "tests/diagnose/test_metrics.py",
          "a misspelt metric name in the registry's constants"),
    Fault("diagnose/metrics.py", "    for key, group in GROUPS.items():\n", "    for key, group in list(GROUPS.items())[1:]:\n",
          "tests/diagnose/test_metrics.py", "the README's metric table drops a row"),
    Fault("diagnose/metrics.py", "    return base_name(name) in REGISTRY\n", "    return True\n",
          "tests/diagnose/test_metrics.py", "every name counts as registered"),
]


def _copy_tree(dest: Path) -> None:
    for name in ("ganlab", "tests"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "test-artifacts"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")


def run_fault(fault: Fault, scratch: Path, timeout: float) -> tuple[str, float, str]:
    """("killed" | "survived" | "timeout", seconds, the last line pytest printed) for one fault in ``scratch``."""
    target = scratch / "ganlab" / fault.file
    original = (REPO / "ganlab" / fault.file).read_text()
    target.write_text(original.replace(fault.original, fault.planted, 1))
    env = {**os.environ, "PYTHONPATH": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                               "-o", "addopts=", *fault.tests.split()], cwd=scratch, env=env, capture_output=True,
                              text=True, timeout=timeout)
        outcome = "survived" if proc.returncode == 0 else "killed"
        last = (proc.stdout.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        outcome, last = "timeout", f"over {timeout:.0f} s"
    finally:
        target.write_text(original)
    return outcome, time.perf_counter() - started, last


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="faults tested at once (default 2)")
    ap.add_argument("--only", help="only the faults whose file or description contains this")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    faults = [f for f in FAULTS if not args.only or args.only in f.file or args.only in f.what]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ganlab-faults-") as tmp:
        scratches = [Path(tmp) / f"copy{i}" for i in range(args.jobs)]
        for s in scratches:
            s.mkdir()
            _copy_tree(s)
        free = list(scratches)

        def one(fault: Fault):
            scratch = free.pop()
            try:
                return fault, run_fault(fault, scratch, args.timeout)
            finally:
                free.append(scratch)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(one, faults))
    print(f"{'':2} {'result':8} {'s':>5}  fault")
    for fault, (outcome, seconds, _) in results:
        print(f"{'!!' if outcome != 'killed' else '':2} {outcome:8} {seconds:5.0f}  ganlab/{fault.file}: {fault.what}")
    survived = [f for f, (o, _, _) in results if o != "killed"]
    print(f"\n{len(results) - len(survived)} of {len(results)} faults killed, {len(survived)} survived "
          f"({time.perf_counter() - started:.0f} s, {args.jobs} at a time)")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
