"""Confining a user's PromQL to one namespace, through a real PromQL parser. Pure.

A custom query (`spec.metrics.queries`) runs with the operator's access to Prometheus. Every
series a PromQL expression reads comes in through a vector or matrix selector, so the query is
parsed (`promql-parser`, a binding of a Rust parser that follows Prometheus' grammar), every
selector gets `<label>="<namespace>"`, and this module prints the tree back as text. Matchers
are ANDed: one of the user's own on that label (`namespace="other"`, `namespace=~".*"`) can
narrow what a selector reads, never widen it.

The printed text is checked before it is used, failing closed: parsed again, without the added
matchers it is the user's tree, and with them every selector carries the matcher. What this
module cannot print faithfully, or the parser can read but Prometheus 2 cannot confine
(`info()`, `or` between matchers, quoted UTF-8 names), is rejected with a message; so is a
query nested deeper than real ones are, before the parser spends seconds on it.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Any, Optional

import promql_parser as pp

from plateau.api.durations import format_milliseconds

# The template placeholders; "$namespace" first, since "$name" is its prefix.
PLACEHOLDERS = ("$namespace", "$name")
_SENTINELS = {"$namespace": "plateau_placeholder_namespace_0", "$name": "plateau_placeholder_name_0"}

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_OPS = ((pp.MatchOp.Equal, "="), (pp.MatchOp.NotEqual, "!="), (pp.MatchOp.Re, "=~"), (pp.MatchOp.NotRe, "!~"))
# Resource limits (see _check_size); real queries stay far below them.
MAX_NESTING = 32  # brackets
MAX_OPERATORS = 128  # + - * / % ^ < > ! ==
MAX_DEPTH = 128  # levels of the parsed tree
# info() joins each series with target_info series found by their job and instance only.
_UNCONFINABLE_FUNCTIONS = {"info"}


def escape_label_value(value: str) -> str:
    """A PromQL double-quoted string literal body: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def substitute(template: str, namespace: str, name: str) -> str:
    """The template with $namespace and $name replaced by the escaped values."""
    return template.replace("$namespace", escape_label_value(namespace)).replace("$name", escape_label_value(name))


def check_template(template: str) -> str:
    """The template, if it parses, uses the placeholders only inside quoted strings (so any
    name parses the same), and can be confined; else ValueError saying why."""
    text = template
    for placeholder in PLACEHOLDERS:
        text = text.replace(placeholder, _SENTINELS[placeholder])
    _check_size(text)
    tree = _parse(text)
    strings = [s for node in _nodes(tree) for s in _strings_of(node)]
    for placeholder in PLACEHOLDERS:
        sentinel = _SENTINELS[placeholder]
        if text.count(sentinel) != sum(s.count(sentinel) for s in strings):
            raise ValueError(f"{placeholder} may appear only inside a quoted string, e.g. "
                             f'{{job="{placeholder}"}}')
    confine(text, "namespace", "default")
    return template


@functools.lru_cache(maxsize=1024)  # the operator confines each custom query every cycle
def confine(query: str, label: str, namespace: str) -> str:
    """The query with label="namespace" added to every selector, or ValueError."""
    _check_size(query)
    tree = _parse(query)
    wanted = sum(isinstance(n, pp.VectorSelector) for n in _nodes(tree))
    try:
        same = _render(tree, None)
        confined = _render(tree, (label, namespace))
        # Fail closed: the text must read back as the user's tree, every selector confined.
        if _parse(same).prettify() != tree.prettify():
            raise ValueError("cannot be printed back faithfully")
        selectors = [n for n in _nodes(_parse(confined)) if isinstance(n, pp.VectorSelector)]
        if len(selectors) != wanted or not all(_confined(s, label, namespace) for s in selectors):
            raise ValueError("a selector was left unconfined")
    except BaseException as exc:  # noqa: B036 - the binding's panics are BaseExceptions
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ValueError(f"cannot be confined to the namespace: {exc}") from None
    return confined


# --- reading ---------------------------------------------------------------------------------


def _parse(text: str) -> Any:
    try:
        return pp.parse(text)
    except BaseException as exc:  # noqa: B036 - the binding's panics are BaseExceptions
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ValueError(f"not valid PromQL: {exc}") from None


def _check_size(text: str) -> None:
    """Bound the tree's depth before parsing: the parser's time grows with the square of it
    (4,096 characters of `-` take seconds). A resource limit only: what a query reads is
    decided on the parsed tree. Counts brackets and operators outside strings and comments."""
    depth = deepest = operators = 0
    quote = previous = ""
    chars = iter(text)
    for c in chars:
        if quote:
            if c == "\\" and quote != "`":
                next(chars, "")
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c == "#":
            for c in chars:
                if c == "\n":
                    break
        elif c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
        elif c in "+-*/%^<>!" or c == "=" == previous:
            operators += 1
        previous = c
    if deepest > MAX_NESTING or operators > MAX_OPERATORS:
        raise ValueError(f"too complex: at most {MAX_NESTING} nested brackets and {MAX_OPERATORS} operators")


def _nodes(tree: Any) -> list[Any]:
    """Every node of the tree, at most MAX_DEPTH deep (`and` chains, which _check_size does
    not count). The binding's walk() takes time cubic in the depth: not used."""
    found, stack = [], [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"too complex: more than {MAX_DEPTH} levels of operations")
        found.append(node)
        if isinstance(node, pp.MatrixSelector):
            children = [node.vector_selector]
        elif isinstance(node, (pp.SubqueryExpr, pp.ParenExpr, pp.UnaryExpr)):
            children = [node.expr]
        elif isinstance(node, pp.BinaryExpr):
            children = [node.lhs, node.rhs]
        elif isinstance(node, pp.AggregateExpr):
            children = [node.expr] if node.param is None else [node.param, node.expr]
        elif isinstance(node, pp.Call):
            children = list(node.args)
        elif isinstance(node, (pp.VectorSelector, pp.NumberLiteral, pp.StringLiteral)):
            children = []
        else:
            raise ValueError(f"unsupported PromQL node {type(node).__name__}")
        stack += [(child, depth + 1) for child in children]
    return found


def _strings_of(node: Any) -> list[str]:
    """The values of a node's own quoted strings: label matcher values, string literals."""
    if isinstance(node, pp.VectorSelector):
        return [m.value for m in node.matchers.matchers] + \
            [m.value for group in node.matchers.or_matchers for m in group]
    return [node.val] if isinstance(node, pp.StringLiteral) else []


def _confined(selector: Any, label: str, namespace: str) -> bool:
    return not selector.matchers.or_matchers and any(
        m.op == pp.MatchOp.Equal and m.name == label and m.value == namespace for m in selector.matchers.matchers)


# --- printing --------------------------------------------------------------------------------


def _render(node: Any, inject: Optional[tuple[str, str]]) -> str:
    """PromQL text for the tree; parentheses only where the user wrote them (a parsed tree
    needs no others), every selector with the `inject` matcher if given."""
    def r(child: Any) -> str:
        return _render(child, inject)

    if isinstance(node, pp.VectorSelector):
        return _selector(node, inject) + _modifiers(node.at, node.offset)
    if isinstance(node, pp.MatrixSelector):
        vs = node.vector_selector
        return f"{_selector(vs, inject)}[{_duration(node.range)}]{_modifiers(vs.at, vs.offset)}"
    if isinstance(node, pp.SubqueryExpr):
        step = _duration(node.step) if node.step else ""
        return f"{r(node.expr)}[{_duration(node.range)}:{step}]{_modifiers(node.at, node.offset)}"
    if isinstance(node, pp.ParenExpr):
        return f"({r(node.expr)})"
    if isinstance(node, pp.UnaryExpr):
        inner = r(node.expr)
        return f"- {inner}" if inner.startswith("-") else f"-{inner}"
    if isinstance(node, pp.BinaryExpr):
        return f"{r(node.lhs)} {node.op}{_binary_modifier(node.modifier)} {r(node.rhs)}"
    if isinstance(node, pp.AggregateExpr):
        grouping = ""
        if node.modifier is not None:
            kind = "by" if node.modifier.type == pp.AggModifierType.By else "without"
            grouping = f" {kind} ({_labels(node.modifier.labels)})"
        param = f"{r(node.param)}, " if node.param is not None else ""
        return f"{node.op}{grouping} ({param}{r(node.expr)})"
    if isinstance(node, pp.Call):
        if node.func.name in _UNCONFINABLE_FUNCTIONS:
            raise ValueError(f"{node.func.name}() reads series no selector names")
        return f"{node.func.name}({', '.join(r(a) for a in node.args)})"
    if isinstance(node, pp.NumberLiteral):
        return _number(node.val)
    if isinstance(node, pp.StringLiteral):
        return f'"{escape_label_value(node.val)}"'
    raise ValueError(f"unsupported PromQL node {type(node).__name__}")


def _selector(vs: Any, inject: Optional[tuple[str, str]]) -> str:
    if vs.matchers.or_matchers:
        raise ValueError("`or` between label matchers is not supported")
    matchers = [(m.name, _op(m.op), m.value) for m in vs.matchers.matchers]
    if inject is not None and (inject[0], "=", inject[1]) not in matchers:
        matchers.append((inject[0], "=", inject[1]))
    for label, _, _ in matchers:
        if not _LABEL_NAME.fullmatch(label):
            raise ValueError(f"label name {label!r} is not a PromQL identifier")
    name = vs.name or ""
    if name and not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"metric name {name!r} is not a PromQL identifier")
    return name + "{" + ", ".join(f'{label}{op}"{escape_label_value(value)}"' for label, op, value in matchers) + "}"


def _op(op: Any) -> str:
    for known, text in _OPS:  # the binding's enum values are not hashable
        if op == known:
            return text
    raise ValueError(f"unsupported matcher {op}")


def _modifiers(at: Any, offset: Optional[timedelta]) -> str:
    text = ""
    if at is not None:
        if at.type == pp.AtModifierType.Start:
            text += " @ start()"
        elif at.type == pp.AtModifierType.End:
            text += " @ end()"
        else:
            text += f" @ {at.at.timestamp():.3f}"
    if offset is not None:
        text += f" offset {_duration(offset)}"
    return text


def _binary_modifier(modifier: Any) -> str:
    if modifier is None:
        return ""
    fill = modifier.fill_values
    if fill is not None and (fill.lhs is not None or fill.rhs is not None):
        raise ValueError("fill() in vector matching is not supported")
    text = " bool" if modifier.return_bool else ""
    if modifier.matching is not None:
        kind = "on" if modifier.matching.type == pp.LabelModifierType.Include else "ignoring"
        text += f" {kind} ({_labels(modifier.matching.labels)})"
    if modifier.card == pp.VectorMatchCardinality.ManyToOne:
        text += f" group_left ({_labels(modifier.group_labels or [])})"
    elif modifier.card == pp.VectorMatchCardinality.OneToMany:
        text += f" group_right ({_labels(modifier.group_labels or [])})"
    return text


def _labels(labels: list[str]) -> str:
    for label in labels:
        if not _LABEL_NAME.fullmatch(label):
            raise ValueError(f"label name {label!r} is not a PromQL identifier")
    return ", ".join(labels)


def _duration(delta: timedelta) -> str:
    ms = round(delta / timedelta(milliseconds=1))
    return "-" + format_milliseconds(-ms) if ms < 0 else format_milliseconds(ms)


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Inf" if value > 0 else "-Inf"
    return repr(value)
