"""ganlab.config.errors: pydantic's validation errors in ganlab's words, one sentence naming the dotted key as
the user wrote it (never a union's tag), with "did you mean ...?" for a near miss."""

from studyfile import BASE, error_of, write


def test_unknown_key_names_file_and_path(tmp_path):
    path = write(tmp_path, BASE.replace("lr_ratio: 2", "lr_rtio: 2"))
    err = error_of(path)
    assert err.key == "trial.optim.lr_rtio"
    assert str(path) in str(err) and "unknown key" in str(err)
    assert "\n" not in str(err)


def test_unknown_top_level_key(tmp_path):
    err = error_of(write(tmp_path, BASE + "seedz: [1]\n"))
    assert err.key == "seedz"


def test_bad_value_names_path(tmp_path):
    err = error_of(write(tmp_path, BASE.replace("lr_ratio: 2", "lr_ratio: -1")))
    assert err.key == "trial.optim.lr_ratio" and "greater than 0" in err.message


def test_union_member_key_path_has_no_tag(tmp_path):
    err = error_of(write(tmp_path, BASE.replace("{name: ring8, batch_size: 64}", "{name: grid25, radius: 2}")))
    assert err.key == "trial.data.radius"
    err = error_of(write(tmp_path, BASE.replace("name: ring8", "name: ring9")))
    assert err.key == "trial.data.name" and "ring8" in err.message


def test_a_misspelt_key_gets_a_suggestion_from_its_own_section(tmp_path):
    err = error_of(write(tmp_path, BASE.replace("lr_ratio: 2", "lr_ratoi: 2")))
    assert err.key == "trial.optim.lr_ratoi" and err.message.endswith("Did you mean 'lr_ratio'?")
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_ratio: {grdi: [1, 2]}\n"))
    assert err.key == "sweep.optim.lr_ratio.grdi" and "Did you mean 'grid'?" in err.message
    err = error_of(write(tmp_path, BASE + "seedz: [1]\n"))
    assert "Did you mean 'seeds'?" in err.message
    err = error_of(write(tmp_path, BASE + "sweep:\n  optim.lr_ratoi: {grid: [1, 2]}\n"))
    assert err.key == "sweep.optim.lr_ratoi" and "Did you mean 'optim.lr_ratio'?" in err.message
    err = error_of(write(tmp_path, BASE.replace("lr_ratio: 2", "zzz: 2")))
    assert "Did you mean" not in err.message  # nothing close: no guess


def test_a_bad_name_says_the_choices_in_ganlabs_words(tmp_path):
    err = error_of(write(tmp_path, BASE + "  loss: {name: nonsaturating}\n"))
    assert err.key == "trial.loss.name"
    assert err.message.startswith("loss.name 'nonsaturating' is not one of: minimax, non_saturating, hinge, "
                                  "least_squares, wgan, wgan_gp.")
    assert err.message.endswith("Did you mean 'non_saturating'?") and "tag" not in err.message
    err = error_of(write(tmp_path, BASE + "scheduler: {name: ashe, grace_steps: 5}\n"))
    assert err.key == "scheduler.name" and "Did you mean 'asha'?" in err.message
    err = error_of(write(tmp_path, BASE + "  model: {activation: rellu}\n"))
    assert err.key == "trial.model.activation" and "'rellu' is not one of: relu, leaky_relu, elu, tanh." in err.message
    assert "Did you mean 'relu'?" in err.message

