"""plateau.api.yamlfile: what a user's YAML file may be, and the one line it gets otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from plateau.api.errors import InputError
from plateau.api.yamlfile import MAX_DEPTH, load_yaml_documents


def load(tmp_path: Path, data: bytes) -> list:
    path = tmp_path / "f.yaml"
    path.write_bytes(data)
    return load_yaml_documents(path)


def test_nesting_up_to_the_bound_and_shared_aliases_load(tmp_path: Path) -> None:
    deep = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert load(tmp_path, f"a: {deep}\n".encode())  # the mapping is one level, the lists the rest
    assert load(tmp_path, b"a: &x {b: [1, 2]}\nc: *x\nd: *x\n") == [{"a": {"b": [1, 2]}, "c": {"b": [1, 2]}, "d": {"b": [1, 2]}}]
    assert load(tmp_path, b"\xef\xbb\xbfkind: TrainingJob\n") == [{"kind": "TrainingJob"}]  # a BOM, as kubectl takes it
    assert load(tmp_path, b"") == []


@pytest.mark.parametrize(("data", "expected"), [
    (b"a: " + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"\n", f"f.yaml:1:{MAX_DEPTH + 3}: nested deeper than {MAX_DEPTH} levels"),
    (b"a: &x " + b"[" * 60 + b"]" * 60 + b"\nb: &y " + b"[" * 50 + b"*x" + b"]" * 50 + b"\n",
     "aliases expand this to deeper than"),
    (b"a: b\n  c: d\n", "f.yaml:2:4: not valid YAML: mapping values are not allowed here"),
    (b"a: 'open\n", "f.yaml:2:1: not valid YAML: found unexpected end of stream (while scanning a quoted scalar at line 1)"),
    (b"a: \x80\n", "f.yaml:1:4: not UTF-8 text (byte 0x80)"),
    (b"\xff\xfea\x00:\x00", "f.yaml:1:1: UTF-16 text"),
    (b"a: \x1b[31m\n", "f.yaml:1:4: character U+001B is not allowed in YAML"),
])
def test_bad_yaml_is_one_line_naming_file_line_and_column(tmp_path: Path, data: bytes, expected: str) -> None:
    with pytest.raises(InputError) as info:
        load(tmp_path, data)
    message = str(info.value)
    assert expected in message and "\n" not in message and "<unicode string>" not in message, message
