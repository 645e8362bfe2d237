"""The mutation check's own parts: which mutants a source offers, and that each changes one thing."""

from __future__ import annotations

import ast

from benchmarks.mutation import TESTS, mapped_tests, mutants, mutate, sample

SOURCE = '''"""A docstring: not code."""
LIMIT: int = 3


def pick(values: list[int], strict: bool = True) -> int:
    """Another docstring."""
    if strict and len(values) < LIMIT:
        return min(values)
    log(f"{len(values)} values")
    return not strict
'''


def test_each_mutant_changes_exactly_one_site_and_leaves_docstrings_and_annotations_alone() -> None:
    found = mutants("m", SOURCE)
    described = [(m.line, m.description) for m in found]
    assert described == [
        (2, "3 -> 4 in `LIMIT: int = 3`"),
        (5, "True -> False in `values: list[int], strict: bool=True`"),
        (7, "condition negated in `strict and len(values) < LIMIT`"),
        (7, "and -> or in `strict and len(values) < LIMIT`"),
        (7, "< -> <= in `len(values) < LIMIT`"),
        (8, "return value -> None in `return min(values)`"),
        (8, "min() -> max() in `min(values)`"),
        (9, "statement dropped in `log(f'{len(values)} values')`"),
        (10, "return value -> None in `return not strict`"),
        (10, "not x -> x in `not strict`"),
    ]
    original = ast.dump(ast.parse(mutate(SOURCE, -1)))
    for m in found:
        changed = mutate(SOURCE, m.index)
        assert ast.dump(ast.parse(changed)) != original, m
        assert '"""A docstring: not code."""' in changed and "values: list[int]" in changed
    assert "if not (strict and len(values) < LIMIT):" in mutate(SOURCE, 2)


def test_a_sample_is_the_same_for_the_same_seed_and_kept_in_source_order() -> None:
    found = mutants("m", SOURCE)
    assert sample(found, 4, 19) == sample(found, 4, 19)
    assert [m.index for m in sample(found, 4, 19)] == sorted(m.index for m in sample(found, 4, 19))
    assert sample(found, 0, 19) == found and sample(found, 100, 19) == found


def test_every_module_maps_to_test_files_that_exist() -> None:
    for module in TESTS:
        assert mapped_tests(module), module
