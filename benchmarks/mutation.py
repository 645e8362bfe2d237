"""Mutation check: how many small plausible bugs in the engine and the loop do the unit tests catch?

    .venv/bin/python -m benchmarks.mutation                                   # every module, 40 mutants each
    .venv/bin/python -m benchmarks.mutation --module engine/cohort --module engine/stopflow
    .venv/bin/python -m benchmarks.mutation --max-mutants-per-module 0        # every mutant (slow)

Each mutant is one change to one module's syntax tree: a comparison flipped at its boundary
(`<` to `<=`) or negated (`==` to `!=`, `in` to `not in`), `and`/`or` swapped, a condition
negated or its `not` dropped, an integer constant off by one, `min`/`max` swapped, `+`/`-` or
`*`/`/` swapped, `True`/`False` swapped, a call statement or augmented assignment dropped, a
returned value replaced by None. Docstrings, strings and annotations are left alone.

Mutants are applied one at a time in a temporary copy of the tree (the source tree is never
written: other processes read it), and the module's mapped unit test files run on it with
`-x` and a timeout per mutant. A mutant is killed when the tests fail (or cannot import it),
survives when they pass. Score = (killed + timed out) / mutants. When a module has more mutants
than `--max-mutants-per-module`, a sample is drawn with `--seed`, so reruns draw the same ones.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Callable, Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "operator/plateau"
# What the copy needs for the unit tests to run as in the source tree.
COPIED = ("operator", "sidecar", "client", "tests", "benchmarks", "crds", "charts", "examples", "pyproject.toml")

# Per module, the unit test files that should catch its bugs (globs, fastest first: -x stops at
# the first failure). A new test file that follows the naming is picked up. The rules' and the
# fold's own tests cover the plateau, the forecast and learning-rate schedules.
ENGINE_RULE_TESTS = ("tests/unit/engine/test_rules*.py", "tests/unit/engine/test_forecast.py",
                     "tests/unit/engine/test_schedule.py")
LOOP_TESTS = ("tests/unit/controller/loop/test_*.py", "tests/unit/benchmarks/test_operator_bench.py")
TESTS: dict[str, tuple[str, ...]] = {  # keyed by the module's path under operator/plateau, less .py
    "engine/rules": ENGINE_RULE_TESTS,
    "engine/fold": (*ENGINE_RULE_TESTS, "tests/unit/engine/test_history.py"),
    "engine/stopflow": ("tests/unit/engine/test_stopflow*.py",),
    "engine/cohort": ("tests/unit/engine/test_cohort*.py",),
    "engine/history": ("tests/unit/engine/test_cohort*.py", "tests/unit/engine/test_history.py"),
    "prometheus/summaries": ("tests/unit/prometheus/test_summaries*.py", "tests/unit/local/test_scrape.py", *LOOP_TESTS[:1],
                             "tests/unit/engine/test_history.py"),
    "controller/children": ("tests/unit/controller/test_children.py",),
    "controller/workloads": ("tests/unit/controller/test_workloads.py",),
    "controller/workload_state": ("tests/unit/controller/test_workload_state.py", "tests/unit/controller/test_workloads.py"),
    "controller/trackread": ("tests/unit/controller/test_trackread*.py", *LOOP_TESTS),
    **{f"controller/loop/{stage}": LOOP_TESTS for stage in ("gather", "fetch", "assemble", "plan", "act", "write", "memory")},
}
DEFAULT_MODULES = ("engine/fold", "engine/rules", "engine/stopflow", "prometheus/summaries", "controller/children", "controller/workloads",
                   "controller/workload_state", "engine/cohort", "controller/loop/plan", "controller/loop/assemble",
                   "controller/loop/write")


# --- mutants (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the mutation site's position in the walk, the same on every parse of the source
    line: int
    description: str


_FLIP: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_BINOP: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
           ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
           ast.Div: "/", ast.And: "and", ast.Or: "or"}

# A site: (line, description, apply), where apply changes the node in place or returns a replacement.
Site = tuple[int, str, Callable[[], Optional[ast.AST]]]


def _sites(node: ast.AST) -> Iterator[Site]:
    """The mutations one node offers. `apply` returns the node that replaces it (or None: changed in place)."""
    line = getattr(node, "lineno", 0)
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            new = _FLIP.get(type(op))
            if new is not None:
                yield line, f"{_SYMBOL[type(op)]} -> {_SYMBOL[new]}", lambda i=i, new=new: node.ops.__setitem__(i, new())
    elif isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield line, f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}", lambda: setattr(node, "op", new())
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP \
            and not any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in (node.left, node.right)):
        new = _BINOP[type(node.op)]
        yield line, f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}", lambda: setattr(node, "op", new())
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield line, "not x -> x", lambda: node.operand
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        yield line, f"{node.value} -> {not node.value}", lambda: setattr(node, "value", not node.value)
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        yield line, f"{node.value} -> {node.value + 1}", lambda: setattr(node, "value", node.value + 1)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
        new = "max" if node.func.id == "min" else "min"
        yield line, f"{node.func.id}() -> {new}()", lambda: setattr(node.func, "id", new)
    if isinstance(node, (ast.If, ast.While, ast.IfExp)) and not isinstance(node.test, ast.UnaryOp):
        yield line, "condition negated", lambda: setattr(node, "test", ast.UnaryOp(ast.Not(), node.test))
    elif isinstance(node, ast.Return) and node.value is not None \
            and not (isinstance(node.value, ast.Constant) and node.value.value is None):
        yield line, "return value -> None", lambda: setattr(node, "value", ast.Constant(None))
    elif isinstance(node, ast.Expr) and isinstance(node.value, (ast.Call, ast.Await)) or isinstance(node, ast.AugAssign):
        yield line, "statement dropped", lambda: ast.Pass()


def _snippet(node: ast.AST, width: int = 60) -> str:
    shown = node.test if isinstance(node, (ast.If, ast.While)) else node
    text = ast.unparse(shown).splitlines()[0]
    return text if len(text) <= width else text[:width - 3] + "..."


class _Walk(ast.NodeTransformer):
    """Visits every node in a fixed order, skipping docstrings, strings and annotations; applies
    the site numbered `target` (or none, -1) and records every site's (line, description)."""

    def __init__(self, target: int = -1) -> None:
        self.target = target
        self.found: list[tuple[int, str]] = []
        self.parents: list[ast.AST] = []

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:]  # the docstring: not code
                super().generic_visit(node)
                node.body = [body[0], *node.body]
                return node
        if isinstance(node, ast.AnnAssign):
            node.target, node.value = self.visit(node.target), node.value and self.visit(node.value)
            return node
        if isinstance(node, ast.arg) or isinstance(node, ast.JoinedStr):
            return node  # annotations; f-strings are messages
        return super().generic_visit(node)

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            returns, node.returns = node.returns, None  # an annotation: not walked
            node = self.generic_visit(node)
            node.returns = returns  # type: ignore[union-attr]
            return node
        replacement: Optional[ast.AST] = None
        for line, description, apply in _sites(node):
            if len(self.found) == self.target:
                replacement = apply()
            if self.target < 0:  # listing: name the code it changes
                shown = node  # a constant is shown with its surroundings
                for parent in reversed(self.parents if isinstance(node, ast.Constant) else []):
                    shown = parent
                    if not isinstance(parent, (ast.UnaryOp, ast.Slice, ast.Subscript)):
                        break
                description = f"{description} in `{_snippet(shown)}`"
            self.found.append((line, description))
        if replacement is not None:
            return replacement
        self.parents.append(node)
        try:
            return self.generic_visit(node)
        finally:
            self.parents.pop()


def mutants(module: str, source: str) -> list[Mutant]:
    walk = _Walk()
    walk.visit(ast.parse(source))
    return [Mutant(module, i, line, description) for i, (line, description) in enumerate(walk.found)]


def mutate(source: str, index: int) -> str:
    tree = _Walk(index).visit(ast.parse(source))
    return ast.unparse(ast.fix_missing_locations(tree))


def sample(found: list[Mutant], limit: int, seed: int) -> list[Mutant]:
    if limit <= 0 or len(found) <= limit:
        return found
    return sorted(random.Random(f"{seed}:{found[0].module}").sample(found, limit), key=lambda m: m.index)


# --- running ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    mutant: Mutant
    result: str  # killed | survived | timeout
    seconds: float


def copy_tree(into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, into / name, ignore=ignore, symlinks=True)
        elif src.exists():
            shutil.copy2(src, into / name)


def mapped_tests(module: str, root: Path = ROOT) -> list[str]:
    files: list[str] = []
    for pattern in TESTS[module]:
        for path in sorted(glob(str(root / pattern))):
            rel = str(Path(path).relative_to(root))
            if rel not in files:
                files.append(rel)
    return files


def run_tests(copy: Path, files: list[str], timeout: float) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(copy / p) for p in ("operator", "sidecar", "")),
           "PYTHONDONTWRITEBYTECODE": "1"}  # a mutant must never run from an earlier one's bytecode
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files],
                            cwd=copy, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "timeout", time.perf_counter() - started
    return ("survived" if code == 0 else "killed"), time.perf_counter() - started


def check_module(copy: Path, module: str, args: argparse.Namespace) -> list[Outcome]:
    path = copy / PACKAGE / f"{module}.py"
    source = path.read_text()  # the copy's: the tree may change while this runs
    files = mapped_tests(module, copy)
    path.write_text(mutate(source, -1))  # unmutated, but unparsed as every mutant is
    result, baseline = run_tests(copy, files, args.timeout * 10)
    if result != "survived":
        raise SystemExit(f"{module}: the unmutated tests do not pass ({result}): {' '.join(files)}")
    found = mutants(module, source)
    chosen = sample(found, args.max_mutants_per_module, args.seed)
    timeout = max(args.timeout, 3 * baseline)
    print(f"{module}: {len(chosen)} of {len(found)} mutants; tests {baseline:.1f}s: {' '.join(files)}", flush=True)
    outcomes = []
    try:
        for mutant in chosen:
            path.write_text(mutate(source, mutant.index))
            result, seconds = run_tests(copy, files, timeout)
            outcomes.append(Outcome(mutant, result, seconds))
            if args.verbose:
                print(f"  {result:8} {PACKAGE}/{module}.py:{mutant.line}: {mutant.description}", flush=True)
    finally:
        path.write_text(source)
    return outcomes


def report(results: dict[str, list[Outcome]]) -> str:
    lines = [f"{'module':12} {'mutants':>7} {'killed':>7} {'survived':>8} {'timeout':>7} {'score':>6}"]
    survivors = []
    for module, outcomes in results.items():
        count = {k: sum(1 for o in outcomes if o.result == k) for k in ("killed", "survived", "timeout")}
        score = (count["killed"] + count["timeout"]) / len(outcomes) if outcomes else 1.0
        lines.append(f"{module:12} {len(outcomes):7} {count['killed']:7} {count['survived']:8} {count['timeout']:7}"
                     f" {score:6.0%}")
        survivors += [f"{PACKAGE}/{module}.py:{o.mutant.line}: {o.mutant.description}"
                      for o in outcomes if o.result == "survived"]
    if survivors:
        lines += ["", "survivors:", *survivors]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(TESTS),
                        help=f"a module to mutate (repeatable; default: {', '.join(DEFAULT_MODULES)})")
    parser.add_argument("--max-mutants-per-module", type=int, default=40, help="sample size per module; 0: all")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant (at least 3x the clean run)")
    parser.add_argument("--list", action="store_true", help="list the chosen mutants, run nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each mutant's outcome as it comes")
    args = parser.parse_args(argv)
    modules = args.module or list(DEFAULT_MODULES)
    if args.list:
        for module in modules:
            found = mutants(module, (ROOT / PACKAGE / f"{module}.py").read_text())
            for m in sample(found, args.max_mutants_per_module, args.seed):
                print(f"{PACKAGE}/{module}.py:{m.line}: {m.description}")
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plateau-mutation-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        results = {module: check_module(copy, module, args) for module in modules}
    print()
    print(report(results))
    print(f"\n(seed {args.seed}, at most {args.max_mutants_per_module or 'all'} mutants per module,"
          f" {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
