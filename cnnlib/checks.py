"""Checks of scalar settings shared by the whole library: ints, pairs, reals, flags.

Every error names the argument and the value, so that a student reading the message
knows what to change. ``cnnlib.numpy``, ``cnnlib.torch``, ``cnnlib.data`` and
``cnnlib.viz`` all use these, so a setting is checked the same way everywhere.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["as_int", "as_pair", "as_real", "check_bool"]


def check_bool(value, name: str) -> bool:
    """Return ``value`` if it is ``True`` or ``False``; anything else is a TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def as_int(value, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int, rejecting bools, floats and values below minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_pair(value, name: str, *, minimum: int | None = None) -> tuple[int, int]:
    """Return ``(v, v)`` for an int, or check and return a pair of ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (as_int(value[0], name, minimum=minimum), as_int(value[1], name, minimum=minimum))
    v = as_int(value, name, minimum=minimum)
    return (v, v)


def as_real(value, name: str, *, low: float = -math.inf, high: float = math.inf) -> float:
    """Return a finite real setting in ``[low, high]`` as a float (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and low <= v <= high):
        if math.isinf(low) and math.isinf(high):
            want = "finite"
        elif math.isinf(high):
            want = f"a finite number >= {low:g}"
        else:
            want = f"in [{low:g}, {high:g}]"
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return v
