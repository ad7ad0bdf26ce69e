from ray import tune

from ganlab.config import load_study
from ganlab.tuning import describe, param_space, short_names

from conftest import STUDIES


def test_short_names_disambiguate():
    assert short_names(["optim.lr_ratio", "seed"]) == {"optim.lr_ratio": "lr_ratio", "seed": "seed"}
    assert short_names(["regularizer.r1", "model.width", "data.width"]) == {
        "regularizer.r1": "r1", "model.width": "model.width", "data.width": "data.width"}


def test_describe_formats_values():
    assert describe({"optim.lr_ratio": 0.25, "seed": 2, "loss.name": "hinge"}) == "lr_ratio=0.25 seed=2 name=hinge"
    assert describe({"optim.lr_g": 1.23456e-4}) == "lr_g=0.0001235"


def test_param_space_grids_and_seeds(tmp_path):
    study = load_study(STUDIES / "lr_ratio.yaml")
    space = param_space(study)["overrides"]
    assert space["optim.lr_ratio"] == tune.grid_search([0.25, 0.5, 1, 2, 4, 8])
    assert space["seed"] == tune.grid_search([0, 1, 2])
    p = tmp_path / "s.yaml"
    p.write_text("name: s\nsweep:\n  optim.lr_g: {loguniform: [1.0e-5, 1.0e-3]}\n  loss.name: {choice: [hinge, minimax]}\nnum_samples: 4\n")
    space = param_space(load_study(p))["overrides"]
    assert "seed" not in space
    assert type(space["optim.lr_g"]).__name__ == "Float" and type(space["loss.name"]).__name__ == "Categorical"
