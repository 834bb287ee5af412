"""How a graded function is described: once, as data, in one spec module per assignment.

An assignment's spec module (``cnnlib/grading/a1.py`` for ``a1-convolution``) defines

``ASSIGNMENT``
    the assignment's name in ``solutions/`` (``"a1-convolution"``);
``FUNCTIONS``
    ``{name: FunctionSpec}``, one entry per graded function;
``CELL_TIMEOUT`` (optional)
    seconds a student cell may run while the notebook is graded (default 60): raise it for
    a notebook whose own cells train a network.

The harness (``harness``), the judge (``checks``), the sandbox and the trusted autograder
(``trusted``) read these and know no assignment themselves. A spec holds machinery only:
the seeds and the configurations a hidden check uses stay in the hidden test cell.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FunctionSpec", "Mistake", "Hint", "assignments", "load", "find", "cell_timeout"]


@dataclass(frozen=True)
class Mistake:
    """A known mistake: the value a buggy version returns, and what to tell the student.

    ``variant(lib, args)`` computes, from the reference library, what the buggy function
    returns for ``args`` (raise, or return something of another shape, when the mistake
    does not apply to that configuration). ``message`` names the mistake in words a
    student can act on, without the expected values.
    """

    message: str
    variant: Callable[[Any, tuple], Any]


@dataclass(frozen=True)
class Hint:
    """A cross-configuration hint: shown when every failing configuration, and no passing
    one, satisfies ``applies(case)``."""

    text: str
    applies: Callable[[dict], bool]


@dataclass(frozen=True)
class FunctionSpec:
    """One graded function.

    Parameters
    ----------
    name, signature : str
        ``"conv2d"`` and ``"conv2d(x, w, b, stride=1, padding=0)"``.
    returns : {"int", "float", "array"} or tuple of them
        What a correct function returns: an ``int``, a ``float``, a floating
        ``numpy.ndarray``, or a tuple of those (``("array", "array", "array")`` for
        ``(dx, dw, db)``).
    inputs : callable ``(rng, case) -> tuple``
        The positional arguments for one configuration (a dict from the hidden cell),
        drawn from ``rng``, a ``numpy.random.Generator``.
    reference : callable ``(lib, args) -> value``
        The right answer, computed by the grader from the reference library ``lib``.
    describe : callable ``(case) -> str``
        One line naming a configuration (shapes and settings, never values).
    deny : callable ``() -> sandbox.DenyList``
        What the function may not call while it runs.
    mistakes : sequence of Mistake
        Buggy variants, tried in order when the values differ.
    diagnose : callable ``(lib, args, value, ref) -> str or None``, optional
        Diagnoses no single variant expresses (a wrong output shape, an integer dtype).
    random_cases : callable ``(rng, n) -> list of dict``, optional
        More configurations drawn from the seed (``GRADER.check(..., random=n)``).
    hints : sequence of Hint
    explain_error : callable ``(detail) -> str or None``, optional
        Extra words for an exception the function raised (``detail`` is its message); one
        that takes two parameters gets the call's arguments too, ``(detail, args)``.
    warning_message : str, optional
        When set, a worked example of a visible check (``GRADER.expect``) whose call emits a
        warning (an overflow in ``np.exp``) fails with these words, even when its values are
        right; the hidden checks judge values only.
    parts : tuple of str
        For a tuple result, the name of each element (``("dx", "dw", "db")``), used in
        messages.
    adapter : callable ``(student, watch, *args) -> value``, optional
        Runs in the student's kernel instead of ``student(*args)``, for what cannot cross
        as plain data: it builds the arguments (a torch module, a callable) from the plain
        ``args``, calls the student's code through ``watch(f, *a, **kw)`` (only that runs
        under the deny list) and returns plain values (int, float, array, or a tuple of
        them). It must be a module-level function of the spec module: the kernel imports
        the spec module by name. The grader never runs it on student code.
    """

    name: str
    signature: str
    returns: str
    inputs: Callable[[Any, dict], tuple]
    reference: Callable[[Any, tuple], Any]
    describe: Callable[[dict], str]
    deny: Callable[[], Any]
    mistakes: tuple = ()
    diagnose: Callable | None = None
    random_cases: Callable | None = None
    hints: tuple = ()
    explain_error: Callable | None = None
    needs: tuple = field(default=())  # names the reference library must provide
    parts: tuple = ()
    adapter: Callable | None = None
    warning_message: str = ""

    def __post_init__(self):
        kinds = self.returns if isinstance(self.returns, tuple) else (self.returns,)
        if not kinds or any(k not in RETURN_KINDS for k in kinds):
            raise ValueError(f"FunctionSpec {self.name}: returns must be one of "
                             f"{RETURN_KINDS} or a tuple of them, got {self.returns!r}")
        if isinstance(self.returns, tuple):
            if len(self.parts) != len(self.returns):
                raise ValueError(f"FunctionSpec {self.name}: a tuple result needs one name "
                                 f"per element in parts, got {self.parts!r} for "
                                 f"{self.returns!r}")
        elif self.parts:
            raise ValueError(f"FunctionSpec {self.name}: parts names the elements of a tuple "
                             "result; returns is not a tuple")

    @property
    def is_tuple(self):
        return isinstance(self.returns, tuple)


RETURN_KINDS = ("int", "float", "array")
DEFAULT_CELL_TIMEOUT = 60.0


def cell_timeout(module):
    """Seconds one student cell of this assignment may run while it is graded: the spec
    module's ``CELL_TIMEOUT`` (for an assignment whose notebook trains a network), else
    60."""
    return float(getattr(module, "CELL_TIMEOUT", DEFAULT_CELL_TIMEOUT))


_SPEC_MODULE = re.compile(r"^a\d+$")


def assignments():
    """``{assignment name: spec module}`` for every spec module in this package."""
    from . import __path__ as here

    out = {}
    for info in pkgutil.iter_modules(here):
        if _SPEC_MODULE.match(info.name):
            module = importlib.import_module(f"{__package__}.{info.name}")
            out[module.ASSIGNMENT] = module
    return out


def load(assignment):
    """The spec module of an assignment, by module name (``"a1"``) or assignment name
    (``"a1-convolution"``)."""
    key = str(assignment).split("-")[0]
    if not _SPEC_MODULE.match(key):
        raise ValueError(f"assignment must look like 'a1' or 'a1-convolution', got "
                         f"{assignment!r}")
    try:
        return importlib.import_module(f"{__package__}.{key}")
    except ModuleNotFoundError:
        raise ValueError(f"no grading spec for assignment {assignment!r} "
                         f"(expected cnnlib/grading/{key}.py)") from None


def find(op, assignment=None):
    """The FunctionSpec of graded function ``op``."""
    modules = [load(assignment)] if assignment else list(assignments().values())
    found = [m for m in modules if op in m.FUNCTIONS]
    if len(found) > 1:
        names = ", ".join(sorted(m.ASSIGNMENT for m in found))
        raise KeyError(f"{op!r} is graded in several assignments ({names}): name the "
                       "assignment (Grader(\"a3\"))")
    if found:
        return found[0].FUNCTIONS[op]
    raise KeyError(f"no graded function named {op!r}"
                   + (f" in {assignment}" if assignment else ""))
