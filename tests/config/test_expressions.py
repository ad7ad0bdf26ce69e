"""ganlab.config.expressions: a derived key's expression is arithmetic on trial keys, nothing else."""

import pytest

from studyfile import BASE, error_of, write


@pytest.mark.parametrize("expression, words", [
    ("__import__('os').system('x')", "calls something other than"),
    ("optim.lr_ratio.__class__", "not a trial key"),
    ("optim.nope * 2", "not a trial key"),
    ("1 +", "not an expression"),
    ("[1, 2]", "List"),
])
def test_derived_expressions_are_arithmetic_only(tmp_path, expression, words):
    err = error_of(write(tmp_path, BASE + f"derived:\n  optim.lr_g: \"{expression}\"\n"))
    assert err.key == "derived.optim.lr_g" and words in err.message

