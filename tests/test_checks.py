"""Tests of cnnlib/checks.py: the scalar checks every part of the library shares."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlib.checks import as_int, as_pair, as_real, check_bool


def test_as_int_accepts_integers_and_numpy_integers():
    assert as_int(3, "n") == 3 and type(as_int(np.int64(3), "n")) is int
    assert as_int(1, "n", minimum=1) == 1


@pytest.mark.parametrize("value, error, match", [
    (True, TypeError, "n must be an int, got True"),
    (2.0, TypeError, "n must be an int"),
    ("3", TypeError, "n must be an int"),
    (0, ValueError, "n must be >= 1, got 0"),
])
def test_as_int_rejects_with_the_argument_name(value, error, match):
    with pytest.raises(error, match=match):
        as_int(value, "n", minimum=1)


def test_as_pair():
    assert as_pair(2, "stride") == (2, 2) and as_pair((1, 3), "stride") == (1, 3)
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        as_pair((1, 2, 3), "stride")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        as_pair((1, 0), "stride", minimum=1)


def test_as_real_and_check_bool():
    assert as_real(1, "p", low=0) == 1.0
    for bad in (math.nan, math.inf, -0.5):
        with pytest.raises(ValueError, match="p must be"):
            as_real(bad, "p", low=0)
    with pytest.raises(TypeError, match="p must be a real number"):
        as_real(True, "p")
    assert check_bool(False, "training") is False
    with pytest.raises(TypeError, match="training must be True or False"):
        check_bool(1, "training")
