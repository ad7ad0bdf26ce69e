"""ganlab.study.chart: which figures become MLflow points, decided from the step alone."""

from ganlab.config import TrainConfig
from ganlab.diagnose import metrics as M
from ganlab.study.chart import ChartPlan

NAMES = (M.LOSS_D, M.PARAM_D, M.EVAL_MODES, M.ACC_REAL)


def test_headline_figures_at_chart_points_spread_over_training_eval_figures_at_evals_all_at_the_end():
    plan = ChartPlan(TrainConfig(steps=3000, eval_every=500, log_every=10), chart_points=50)
    assert plan.every == 6  # 300 logged steps thinned to 50
    sent = {step: plan.columns(NAMES, step, evaluated=step % 500 == 0) for step in range(10, 3001, 10)}
    chart_steps = [s for s, cols in sent.items() if cols is None or 0 in cols]
    assert chart_steps == sorted(set(range(60, 3001, 60)) | set(range(500, 3001, 500)))
    assert all(cols is None or 1 not in cols for s, cols in sent.items() if s < 3000)  # param/d: never before the end
    assert [s for s, cols in sent.items() if cols and 2 in cols] == list(range(500, 3000, 500))  # eval/modes at evals
    assert sent[3000] is None  # the last step: everything, so the run's latest values are its final ones
    assert plan.columns(NAMES, 70, evaluated=False, last=True) is None  # a lane that diverged at 70


def test_a_short_trial_sends_every_logged_step_of_its_headline_figures():
    plan = ChartPlan(TrainConfig(steps=300, eval_every=100, log_every=10), chart_points=50)
    assert plan.every == 1
    assert all(plan.columns(NAMES, s, False) == [0, 3] for s in range(10, 300, 10) if s % 100)
