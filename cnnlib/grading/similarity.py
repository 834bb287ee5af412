"""Similarity of students' code: copy-paste is listed for the instructor, never scored.

The report compares, function by function, what each student wrote in the solution cells
of a notebook with every other student's code, with the source of the reference library
(``cnnlib.numpy``) and, when given, with the instructor's solution notebook. It changes no
grade; it names pairs for a human to read.

How code is compared
--------------------
1. **Extract.** The graded units come from the released notebook: every top-level
   function defined in a solution cell (nbgrader metadata ``solution: true`` with a
   ``grade_id``), and the top-level statements of a solution cell that defines none (a
   free-form task). In a submission, a function unit is the *last* top-level definition of
   that name in any cell the student can edit (that is the one the grader runs), plus the
   helper functions defined in the same cell.
2. **Normalise** (``normalize``). Parse with ``ast``; drop docstrings and bare string
   statements; replace arguments and every name the unit assigns (variables, loop targets,
   helpers, comprehension variables) by one placeholder ``_v``, so renaming variables or
   reordering independent lines changes little; keep attribute names (``.shape``) and names the
   unit only reads (``np``, ``range``, ``pad2d``) and imports, which carry the API it calls;
   optionally replace every literal by its type. ``ast.unparse`` then prints one canonical
   text, so comments, blank lines, spacing, line breaks and redundant parentheses vanish,
   and ``tokenize`` cuts it into tokens.
3. **Fingerprint** (``fingerprints``). The set of all ``k``-token windows (``k = 5``) of
   the token stream. The windows of the released stub (the signature and the
   ``raise NotImplementedError()`` everyone starts from) are removed from every
   submission's set, so an unchanged stub is an empty unit and is never compared.
4. **Score** (``containment``). ``|A & B| / min(|A|, |B|)``: the share of the smaller
   unit's windows found in the other. A copy scores 1 however much unrelated code is
   added around it. Library functions are compared as an assignment would hold them
   (``as_assignment``: no argument checking, signature or cache, which a copier has to
   drop or change anyway). Units with fewer than
   ``min_size`` windows (a one-line ``return``) are not compared: everyone writes
   ``(n + 2p - k) // s + 1`` the same way, so agreement there is no evidence.

Two honest implementations of the same loop can still score high: the report is a list
of pairs worth reading side by side, not a verdict. Every pair costs one set
intersection, so a class of 300 students takes well under a second per function.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import re
import textwrap
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "K", "MIN_SIZE", "Match", "Submission", "parse", "normalize", "fingerprints",
    "containment", "graded_units", "extract_units", "library_units", "as_assignment",
    "load_notebook", "submission", "stub_prints", "compare", "format_table", "write_csv",
]

K = 5  # tokens per window: long enough to be specific, short enough to survive small edits
MIN_SIZE = 20  # windows a unit needs (after removing the stub) before it is compared

_MAGIC = re.compile(r"^([ \t]*)[%!].*$", re.M)  # IPython magics and shell escapes are not Python


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------

def _bound_names(tree: ast.AST) -> list[str]:
    """Names a unit binds (arguments, assignments, loop targets, defs), in source order."""
    seen: dict[str, None] = {}

    class Visitor(ast.NodeVisitor):
        def visit_FunctionDef(self, node):
            seen.setdefault(node.name)
            for arg in (*node.args.posonlyargs, *node.args.args, node.args.vararg,
                        *node.args.kwonlyargs, node.args.kwarg):
                if arg is not None:
                    seen.setdefault(arg.arg)
            self.generic_visit(node)

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Lambda(self, node):
            for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
                seen.setdefault(arg.arg)
            self.generic_visit(node)

        def visit_Name(self, node):
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                seen.setdefault(node.id)

        def visit_ExceptHandler(self, node):
            if node.name:
                seen.setdefault(node.name)
            self.generic_visit(node)

    Visitor().visit(tree)
    return list(seen)


class _Canonical(ast.NodeTransformer):
    """Rename bound names, drop docstrings, optionally abstract literals."""

    def __init__(self, names: Mapping[str, str], literals: bool):
        self.names = names
        self.literals = literals

    def _body(self, body):
        kept = [s for s in body if not (isinstance(s, ast.Expr)
                                        and isinstance(s.value, ast.Constant)
                                        and isinstance(s.value.value, str))]
        return kept or [ast.Pass()]

    def generic_visit(self, node):
        node = super().generic_visit(node)
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                setattr(node, name, self._body(body))
        return node

    def visit_FunctionDef(self, node):
        node.name = self.names.get(node.name, node.name)
        node.decorator_list = []
        node.returns = None
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arg(self, node):
        node.arg = self.names.get(node.arg, node.arg)
        node.annotation = None
        return node

    def visit_Name(self, node):
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_ExceptHandler(self, node):
        if node.name:
            node.name = self.names.get(node.name, node.name)
        return self.generic_visit(node)

    def visit_Constant(self, node):
        if self.literals and not isinstance(node.value, bool) and node.value is not None:
            return ast.Name(id=type(node.value).__name__.upper(), ctx=ast.Load())
        return node


def parse(source: str) -> ast.Module:
    """``ast.parse`` after blanking IPython magics (``%timeit``, ``!ls``) that are not Python."""
    return ast.parse(_MAGIC.sub(r"\1pass", source))


def normalize(code: str | ast.AST, *, literals: bool = False, library: bool = False
              ) -> list[str]:
    """Canonical token stream of a piece of code (a function, or a cell's statements).

    Parameters
    ----------
    code : str or ast.AST
        Source text, or an already parsed node (a ``FunctionDef`` or a ``Module``).
    literals : bool
        Replace every number and string by its type (``INT``, ``FLOAT``, ``STR``).
    library : bool
        Library code, shaped as an assignment function would be (``as_assignment``):
        no argument checking, no signature, no cache returned next to the output. The
        names that the dropped lines bind stay placeholders.

    Returns
    -------
    list of str
        Tokens of the canonical text: bound names are all ``_v``; comments,
        docstrings, blank lines and formatting are gone.

    Raises
    ------
    SyntaxError
        When ``code`` is text that does not parse.
    """
    tree = parse(code) if isinstance(code, str) else code
    tree = ast.parse(ast.unparse(tree))  # a private copy, safe to rewrite in place
    # Every name the code binds is its own, even one that shadows a builtin (`filter`). All
    # become one placeholder rather than v0, v1, ... in order of appearance: numbering
    # would let a copier who swaps two lines or adds one variable renumber everything after.
    names = dict.fromkeys(_bound_names(tree), "_v")
    if library:
        tree = as_assignment(tree)
    tree = ast.fix_missing_locations(_Canonical(names, literals).visit(tree))
    text = ast.unparse(tree)
    marks = {tokenize.NEWLINE: ";", tokenize.INDENT: "{", tokenize.DEDENT: "}"}
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
    return [marks.get(tok.type, tok.string)
            for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type not in skip]


def fingerprints(tokens: Iterable[str], k: int = K) -> frozenset:
    """The set of every ``k``-token window of ``tokens`` (all of them when shorter)."""
    tokens = tuple(tokens)
    if not tokens:
        return frozenset()
    if len(tokens) <= k:
        return frozenset([tokens])
    return frozenset(tokens[i:i + k] for i in range(len(tokens) - k + 1))


def containment(a: frozenset, b: frozenset) -> float:
    """``|a & b| / min(|a|, |b|)``: 1 when the smaller set lies inside the other."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


# --------------------------------------------------------------------------------------
# Extraction from notebooks and from the library
# --------------------------------------------------------------------------------------

def _source(cell) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {})
    return meta.get("nbgrader", {}) if isinstance(meta, dict) else {}


def load_notebook(path) -> dict:
    """A notebook's JSON; raises ValueError naming the file when it is not a notebook."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable notebook ({type(exc).__name__}: {exc})"
                         ) from exc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path} is not a notebook: no list of cells")
    return nb


def graded_units(release_nb: dict) -> dict[str, str]:
    """``{unit: "function" or "cell"}`` of a released notebook's solution cells.

    A unit is a function defined in a solution cell, or the solution cell itself (named by
    its ``grade_id``) when it defines no function.
    """
    units = {}
    for cell in release_nb["cells"]:
        meta = _nbgrader(cell)
        if cell.get("cell_type") != "code" or not meta.get("solution") or "grade_id" not in meta:
            continue
        try:
            tree = parse(_source(cell))
        except SyntaxError:
            units[meta["grade_id"]] = "cell"
            continue
        defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef,
                                                            ast.AsyncFunctionDef))]
        units.update(dict.fromkeys(defs, "function") if defs else {meta["grade_id"]: "cell"})
    return units


OTHER = "other:"  # prefix of the units that hold a student's other functions


def extract_units(nb: dict, units: Mapping[str, str]) -> tuple[dict[str, ast.AST], list[str]]:
    """The code of each graded unit in a notebook, and what could not be read.

    Parameters
    ----------
    nb : dict
        Notebook JSON (a submission, the release or the instructor's source).
    units : mapping
        ``graded_units`` of the release.

    Returns
    -------
    code : dict
        ``{unit: ast.Module}`` holding the unit's function and the helpers defined next to
        it, or a task cell's statements (function definitions removed); and, as
        ``"other:<name>"``, every other function the student defined, on its own.
    problems : list of str
        Cells that do not parse, by ``grade_id`` or position.
    """
    code: dict[str, ast.AST] = {}
    problems = []
    by_grade_id = {}
    for index, cell in enumerate(nb["cells"]):
        meta = _nbgrader(cell)
        if cell.get("cell_type") != "code" or meta.get("locked"):
            continue  # locked cells are restored from the gradebook: not the student's
        label = meta.get("grade_id", f"cell {index}")
        try:
            tree = parse(_source(cell))
        except SyntaxError as exc:
            problems.append(f"{label}: SyntaxError line {exc.lineno}")
            continue
        if "grade_id" in meta:
            by_grade_id[meta["grade_id"]] = tree
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in defs:
            if units.get(node.name) == "function":
                helpers = [d for d in defs if d.name not in units]
                code[node.name] = ast.Module(body=[node, *helpers], type_ignores=[])
            elif node.name not in units:
                # any other function of the student's, compared with the library only:
                # library code copied under another name, in any cell
                code[f"{OTHER}{node.name}"] = ast.Module(body=[node], type_ignores=[])
    for unit, kind in units.items():
        if kind == "cell" and unit in by_grade_id:
            body = [s for s in by_grade_id[unit].body
                    if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
            code[unit] = ast.Module(body=body, type_ignores=[])
    return code, problems


def _is_check(stmt: ast.stmt) -> bool:
    """Argument checking: ``raise``, ``assert``, ``if ...: raise``, or a call to a helper
    named ``check*``/``_check*``/``as_*`` (as in ``x, w = _check_x_w(x, w)``)."""
    if isinstance(stmt, (ast.Raise, ast.Assert)):
        return True
    if isinstance(stmt, ast.If) and not stmt.orelse and all(
            isinstance(s, ast.Raise) for s in stmt.body):
        return True
    value = getattr(stmt, "value", None)
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name.lstrip("_").startswith(("check", "as_"))
    return False


def _drop_cache(stmt: ast.stmt) -> ast.stmt:
    """``return out, SomeCache(...)`` -> ``return out``: assignment functions return the
    output alone (cnnlib's forwards return ``(out, cache)``)."""
    value = stmt.value if isinstance(stmt, ast.Return) else None
    if isinstance(value, ast.Tuple) and len(value.elts) == 2 and any(
            isinstance(e, ast.Call) and getattr(e.func, "id", "").endswith("Cache")
            for e in value.elts[1:]):
        return ast.Return(value=value.elts[0])
    return stmt


def as_assignment(tree: ast.AST) -> ast.AST:
    """Library code as an assignment function would hold it (rewrites ``tree`` in place).

    The assignment's functions do not validate their arguments, have their own signature
    and return the output without a cache, so a student who copies a library function
    drops or changes exactly those lines. Comparing with what is left keeps such a copy
    near 1 instead of diluting it with code the student had no reason to copy. A module
    holding one function becomes that function's body.
    """

    class Strip(ast.NodeTransformer):
        def generic_visit(self, node):  # outer statements first: `if bad: raise` is whole
            for name in ("body", "orelse", "finalbody"):
                body = getattr(node, name, None)
                if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                    setattr(node, name, [_drop_cache(s) for s in body if not _is_check(s)]
                            or [ast.Pass()])
            return super().generic_visit(node)

    tree = Strip().visit(tree)
    if isinstance(tree, ast.Module) and len(tree.body) == 1 and isinstance(
            tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        tree = ast.Module(body=tree.body[0].body, type_ignores=[])
    return ast.fix_missing_locations(tree)


LIBRARY_MODULES = ("cnnlib.numpy", "numpy.lib._arraypad_impl",
                   "numpy.lib._stride_tricks_impl")


def library_units(module_names: Iterable[str] = LIBRARY_MODULES) -> dict[str, str]:
    """``{qualified name: source}`` of every function defined in the given packages' modules.

    For ``cnnlib.numpy`` these are the public ops and their private helpers, and for NumPy
    the padding and sliding-window code: what a student could copy, under any name.
    ``compare`` normalises them with ``library=True``. Modules that do not exist in the
    installed NumPy are skipped.
    """
    import importlib
    import pkgutil

    found = {}
    for module_name in module_names:
        try:
            package = importlib.import_module(module_name)
        except ImportError:
            continue
        modules = [package]
        if hasattr(package, "__path__"):
            modules += [importlib.import_module(f"{module_name}.{info.name}")
                        for info in pkgutil.iter_modules(package.__path__)]
        for module in modules:
            for name, obj in vars(module).items():
                if inspect.isfunction(obj) and obj.__module__ == module.__name__:
                    try:
                        found[f"{module.__name__}.{name}"] = textwrap.dedent(
                            inspect.getsource(obj))
                    except (OSError, TypeError):
                        continue
    return dict(sorted(found.items()))


# --------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------

class Match(NamedTuple):
    """One pair above the threshold: ``student``'s ``unit`` against ``other``'s."""

    unit: str
    student: str
    other: str
    kind: str  # "student", "library" or "solution"
    similarity: float
    shared: int  # windows in common
    size: int  # windows of the student's unit (after removing the stub)
    other_size: int


@dataclass
class Submission:
    """One student's fingerprints per unit (empty units are not attempted)."""

    name: str
    prints: dict[str, frozenset] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def submission(name: str, nb: dict, units: Mapping[str, str], stubs: Mapping[str, frozenset],
               *, k: int = K, literals: bool = False) -> Submission:
    """Fingerprint a notebook's units, minus the stub's windows."""
    code, problems = extract_units(nb, units)
    prints = {}
    for unit, tree in code.items():
        windows = fingerprints(normalize(tree, literals=literals), k) - stubs.get(unit, frozenset())
        if windows:
            prints[unit] = windows
    return Submission(name, prints, problems)


def stub_prints(release_nb: dict, units: Mapping[str, str], *, k: int = K,
                literals: bool = False) -> dict[str, frozenset]:
    """``{unit: windows}`` of the released starter code, shared by every student."""
    code, _ = extract_units(release_nb, units)
    return {unit: fingerprints(normalize(tree, literals=literals), k)
            for unit, tree in code.items()}


def compare(students: Iterable[Submission], *, library: Mapping[str, str] | None = None,
            solutions: Iterable[Submission] = (), threshold: float = 0.9,
            min_size: int = MIN_SIZE, k: int = K, literals: bool = False) -> list[Match]:
    """Every pair of students per unit, and each student against the library and solutions.

    Parameters
    ----------
    students : iterable of Submission
    library : mapping, optional
        ``{name: source}`` of reference functions (``library_units()``), each compared,
        without its argument checking, with every student unit like another student.
    solutions : iterable of Submission
        The instructor's notebooks, compared like another student.
    threshold : float
        Report pairs whose similarity is at least this, in ``[0, 1]``.
    min_size : int
        Units with fewer windows are not compared (too short to tell).

    Returns
    -------
    list of Match
        Sorted by similarity (highest first), then by unit and names.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    students = list(students)
    matches = []

    def big(sub, unit):
        windows = sub.prints.get(unit)
        return windows if windows is not None and len(windows) >= min_size else None

    def add(unit, a, b, kind, pa, pb, score):
        if score >= threshold:
            matches.append(Match(unit, a, b, kind, round(score, 4), len(pa & pb), len(pa),
                                 len(pb)))

    units = sorted({u for s in (*students, *solutions) for u in s.prints
                    if not u.startswith(OTHER)})
    for unit in units:
        owners = [(s.name, p) for s in students if (p := big(s, unit)) is not None]
        for (a, pa), (b, pb) in combinations(owners, 2):
            add(unit, a, b, "student", pa, pb, containment(pa, pb))
        for sol in solutions:
            ps = big(sol, unit)
            if ps is not None:
                for a, pa in owners:
                    add(unit, a, sol.name, "solution", pa, ps, containment(pa, ps))
    if library:
        lib = {name: fingerprints(normalize(src, literals=literals, library=True), k)
               for name, src in library.items()}
        for s in students:
            for unit, pa in s.prints.items():
                if len(pa) < min_size:
                    continue
                for name, pl in lib.items():
                    if len(pl) >= min_size:
                        add(unit, s.name, name, "library", pa, pl, containment(pa, pl))
    matches.sort(key=lambda m: (-m.similarity, m.unit, m.student, m.other))
    return matches


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------

def format_table(matches: list[Match]) -> str:
    """A plain-text table of the pairs, most similar first."""
    if not matches:
        return "no pairs above the threshold"
    wa = max(7, *(len(m.student) for m in matches))
    wb = max(5, *(len(m.other) for m in matches))
    wu = max(8, *(len(m.unit) for m in matches))
    rows = [f"{'similarity':>10}  {'function':<{wu}}  {'student':<{wa}}  {'other':<{wb}}  "
            f"{'kind':<8}  windows shared/of the smaller"]
    rows += [f"{m.similarity:>10.2f}  {m.unit:<{wu}}  {m.student:<{wa}}  {m.other:<{wb}}  "
             f"{m.kind:<8}  {m.shared}/{min(m.size, m.other_size)}" for m in matches]
    return "\n".join(rows)


CSV_FIELDS = ["assignment", "function", "student", "other", "kind", "similarity", "shared",
              "size", "other_size"]


def write_csv(path, assignment: str, matches: list[Match]) -> Path:
    """Write the pairs to ``path`` (one row per pair, header included)."""
    import csv

    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for m in matches:
            writer.writerow([assignment, m.unit, m.student, m.other, m.kind,
                             f"{m.similarity:.4f}", m.shared, m.size, m.other_size])
    return path
