"""Reading a YAML file a user names (a manifest, a stop spec): bounded, UTF-8, one-line errors.

Whatever the file holds, the result is its documents or an `InputError` reading
`FILE:LINE:COL: message`: never a traceback, a hang or unbounded memory.
- Only a regular file is read (a FIFO would block, /dev/urandom never ends), and at most
  MAX_BYTES of it: the API server takes objects of about 1.5 MiB at most.
- The text must be UTF-8 (a byte-order mark is allowed, as kubectl allows it); UTF-16 is named.
- Nesting is bounded (MAX_DEPTH) while the file is composed, before PyYAML's recursion could
  overflow; so is the size of the tree that aliases expand to (MAX_NODES), before anything
  walks it, and an alias may not refer to a collection that contains it.
"""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from plateau.api.errors import InputError

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 100  # a TrainingJob with a pod template is about 15 deep
MAX_NODES = 1_000_000  # scalars and collections, with every alias expanded


def read_text(path: Path, what: str = "") -> str:
    """The UTF-8 text of a regular file of at most MAX_BYTES."""
    name = f"{what} {path}".strip()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{name}: cannot read: {'a directory' if stat.S_ISDIR(mode) else 'not a regular file'}")
        data = b""
        while len(data) <= MAX_BYTES and (chunk := os.read(fd, MAX_BYTES + 1 - len(data))):
            data += chunk
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise InputError(f"{name}: larger than {MAX_BYTES // (1024 * 1024)} MiB: not a manifest")
    return decode(data, name)


def decode(data: bytes, name: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (len(data) > 1 and b"\0" in data[:2]):
        raise InputError(f"{name}:1:1: UTF-16 text: save the file as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(f"{name}:{line}:{column}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


class _TooBig(yaml.composer.ComposerError):
    """A bound of this module, not a YAML syntax error."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the nesting depth bounded while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooBig(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expanded(node: yaml.Node) -> None:
    """Bound the tree that aliases expand to (a "billion laughs" file is small and shallow),
    without recursion: sizes and depths of shared nodes are counted once each. An alias inside
    the collection it names (`a: &a [*a]`) expands without end: refused."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()  # counted when done; until then, on the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        key = id(current)
        if key in size:
            continue
        children = _children(current)
        if not done:
            if key in entered:
                raise _TooBig(None, None, "an alias refers to a collection that contains it: it expands without end",
                              current.start_mark)
            entered.add(key)
            stack.append((current, True))
            stack.extend((c, False) for c in children if id(c) not in size)
            continue
        size[key] = 1 + sum(size[id(c)] for c in children)
        depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
        if size[key] > MAX_NODES or depth[key] > MAX_DEPTH:
            what = f"more than {MAX_NODES} values" if size[key] > MAX_NODES else f"deeper than {MAX_DEPTH} levels"
            raise _TooBig(None, None, f"aliases expand this to {what}", current.start_mark)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _located(exc: yaml.YAMLError, name: str, text: str) -> str:
    """`FILE:LINE:COL: message`, one line, from any PyYAML error."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or ""
        problem = problem if isinstance(exc, _TooBig) else f"not valid YAML: {problem}".rstrip(": ")
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if exc.problem and exc.context and exc.context_mark else ""
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        return f"{where}: {problem}{context}"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return f"{name}:{line}:{column}: character U+{exc.character if isinstance(exc.character, int) else ord(exc.character):04X} is not allowed in YAML"
    return f"{name}: not valid YAML: {' '.join(str(exc).split())}"


def load_yaml_documents(path: Path, what: str = "") -> list[Any]:
    """Every document of a YAML file (None for an empty one), or one InputError line."""
    text = read_text(path, what)
    name = f"{what} {path}".strip()
    try:
        loader = _BoundedLoader(text)  # the reader checks every character at once
    except yaml.YAMLError as exc:
        raise InputError(_located(exc, name, text)) from None
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            _check_expanded(node)
            documents.append(loader.construct_document(node))
        return documents
    except yaml.YAMLError as exc:
        raise InputError(_located(exc, name, text)) from None
    except RecursionError:  # not reached within MAX_DEPTH; a last guard all the same
        raise InputError(f"{name}: nested too deeply") from None
    finally:
        loader.dispose()
