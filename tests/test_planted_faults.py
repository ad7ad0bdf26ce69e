"""The planted-fault list stays applicable: every fault's line exists exactly once in its module, and the tests
named to catch it exist (the check itself runs with `python tests/planted_faults.py`; see the README)."""


import pytest

from planted_faults import FAULTS, REPO


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"{f.file}: {f.what}")
def test_each_fault_applies_to_the_current_code(fault):
    text = (REPO / "ganlab" / fault.file).read_text()
    assert text.count(fault.original) == 1, "the faulted line changed: update the fault with the code"
    assert fault.planted != fault.original
    for test in fault.tests.split():
        assert (REPO / test.split("::")[0]).exists(), test


def test_the_list_covers_the_code_that_makes_the_numbers():
    files = {f.file.split("/")[0] for f in FAULTS}
    assert len(FAULTS) >= 30 and {"train", "diagnose", "config", "study", "analysis"} <= files
