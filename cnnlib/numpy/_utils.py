"""Argument checking shared by the NumPy ops.

Every op validates its inputs before doing any work, and every error names the
argument and the shapes involved, so that a student reading the message knows what to
change.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_int, as_pair, as_real, check_bool  # noqa: F401  (re-exported)

__all__: list[str] = []


def shape_str(x) -> str:
    """``(2, 3, 5, 5)`` for an array, ``repr`` for anything else."""
    shape = getattr(x, "shape", None)
    return str(tuple(shape)) if shape is not None else repr(x)


def check_array(x, name: str, *, ndim: int | tuple[int, ...] | None = None,
                floating: bool = True, finite: bool = False) -> np.ndarray:
    """Return ``x`` as an ndarray after checking its type, rank and values.

    Parameters
    ----------
    x : array_like
        The argument to check.
    name : str
        The argument's name, used in error messages.
    ndim : int or tuple of int, optional
        Allowed numbers of dimensions.
    floating : bool
        Require a floating dtype (float32 or float64); integer images must be
        converted by the caller, so a silent integer truncation never happens.
    finite : bool
        Reject NaN and infinity, for arguments where they would silently spread.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {shape_str(x)} "
                             f"({x.ndim} dimensions)")
    if floating and not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype (float32 or float64), "
                        f"got {x.dtype} with shape {shape_str(x)}")
    if finite and not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinity (shape {shape_str(x)})")
    return x


def check_same_shape(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    """Raise ValueError when two arrays that must match do not."""
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {shape_str(a)} but {b_name} has shape "
                         f"{shape_str(b)}; they must be equal")


def check_same_dtype(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    """Raise TypeError when two arrays that must share a dtype do not."""
    if a.dtype != b.dtype:
        raise TypeError(f"{a_name} has dtype {a.dtype} but {b_name} has dtype {b.dtype} "
                        f"(shapes {shape_str(a)} and {shape_str(b)}); convert one with .astype "
                        f"so they match")


def check_dout(dout, shape: tuple[int, ...], dtype=None, *, ndim: int | None = None,
               context: str = "") -> np.ndarray:
    """Check an upstream gradient against the forward output's shape (and dtype, if given).

    ``ndim`` checks the rank first, for a clearer message; ``context`` is appended to the
    shape error, e.g. ``" (x had shape (2, 3, 8, 8))"``.
    """
    check_array(dout, "dout", ndim=ndim)
    if dout.shape != tuple(shape):
        raise ValueError(f"dout has shape {shape_str(dout)} but the forward output had shape "
                         f"{tuple(shape)}{context}; they must be equal")
    if dtype is not None and dout.dtype != dtype:
        raise TypeError(f"dout has dtype {dout.dtype} but the forward pass ran in "
                        f"{np.dtype(dtype)} (shape {shape_str(dout)}); they must match")
    return dout
