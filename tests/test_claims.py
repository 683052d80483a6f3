import pytest

from course_lib.claims import ClaimError, check_above, check_below, check_true, check_within


def test_below_needs_the_margin_of_the_noise(capsys):
    assert check_below("smaller", 1.0, 2.0, noise=0.4)
    assert "holds" in capsys.readouterr().out
    with pytest.raises(ClaimError, match="DOES NOT HOLD"):
        check_below("smaller beyond noise", 1.0, 2.0, noise=0.6)


def test_above_within_and_true():
    assert check_above("larger", 3.0, 1.0, noise=0.5)
    with pytest.raises(ClaimError):
        check_above("larger", 1.0, 1.0)
    assert check_within("same", 1.02, 1.0, 0.05)
    with pytest.raises(ClaimError):
        check_within("same", 1.2, 1.0, 0.05)
    with pytest.raises(ClaimError, match="one template"):
        check_true("one template", False, "3 templates")


def test_nan_is_never_a_holding_claim():
    with pytest.raises(ClaimError, match="finite"):
        check_below("smaller", float("nan"), 1.0)
