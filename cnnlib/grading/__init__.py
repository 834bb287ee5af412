"""Machinery that the hidden tests of the course's assignments use.

Public by design and free of answers: no seeds, no test configurations, no reference
solutions. Each hidden test cell holds its own seed and configurations and calls
:class:`Grader`; the modules here only know how to run a student's function safely
(``sandbox``), how to build inputs, compare with ``cnnlib`` and name a mistake
(``checks``), how to plug into nbgrader (``nbgrader_plugins``). What each graded function
is, its inputs, reference, known mistakes and deny list, is data in one spec module per
assignment (``a1`` for ``a1-convolution``; see ``specs``).

See the instructors' guide in the book for the whole grading flow.
"""

from .harness import Grader, GradingError
from .sandbox import DenyList, Outcome, run_cases

__all__ = ["Grader", "GradingError", "DenyList", "Outcome", "run_cases"]
