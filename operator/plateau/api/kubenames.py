"""Kubernetes' rules for names, label keys and label values, worded as the API server words them. Pure.

The patterns are RE2- and Python-compatible, so the same text serves the models (`re.fullmatch`),
the CRD's `pattern` keywords and CEL `matches()` (anchored with ^ and $).
"""

from __future__ import annotations

import re

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"  # a label key's name part, a label value
LABEL_MAX = 63
SUBDOMAIN_MAX = 253
ANNOTATIONS_MAX_BYTES = 256 * 1024

_LABEL_TEXT = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
               "start and end with an alphanumeric character")
_SUBDOMAIN_TEXT = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                   "and must start and end with an alphanumeric character")
_QUALIFIED_TEXT = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                   "alphanumeric character")


def _full(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value, re.ASCII) is not None


def dns_label_errors(value: str) -> list[str]:
    errors = [f"must be no more than {LABEL_MAX} characters"] if len(value) > LABEL_MAX else []
    return errors + ([] if _full(DNS1123_LABEL, value) else [_LABEL_TEXT])


def dns_subdomain_errors(value: str) -> list[str]:
    errors = [f"must be no more than {SUBDOMAIN_MAX} characters"] if len(value) > SUBDOMAIN_MAX else []
    return errors + ([] if _full(DNS1123_SUBDOMAIN, value) else [_SUBDOMAIN_TEXT])


def qualified_name_errors(value: str) -> list[str]:
    """A label or annotation key: an optional DNS-subdomain prefix and '/', then a name of at most 63."""
    prefix, slash, name = value.rpartition("/")
    errors: list[str] = []
    if slash:
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += [f"prefix part {e}" for e in dns_subdomain_errors(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    else:
        if len(name) > LABEL_MAX:
            errors.append(f"name part must be no more than {LABEL_MAX} characters")
        if not _full(QUALIFIED_NAME, name):
            errors.append(f"name part {_QUALIFIED_TEXT}")
    if value.count("/") > 1:
        errors.append("a qualified name has at most one '/'")
    return errors


def label_value_errors(value: str) -> list[str]:
    errors = [f"must be no more than {LABEL_MAX} characters"] if len(value) > LABEL_MAX else []
    if value and not _full(QUALIFIED_NAME, value):
        errors.append(f"a valid label {_QUALIFIED_TEXT}")
    return errors


def labels_errors(labels: dict[str, str]) -> list[str]:
    return [f"Invalid value: {key!r}: {e}" for key in labels for e in qualified_name_errors(key)] + [
        f"Invalid value: {value!r}: {e}" for value in labels.values() for e in label_value_errors(value)]


# CEL `matches()` texts: a label key (qualified name) and a label value, whole.
QUALIFIED_NAME_CEL = rf"^({DNS1123_SUBDOMAIN}/)?{QUALIFIED_NAME}$"
QUALIFIED_NAME_LENGTHS_CEL = r"^([^/]{1,253}/)?[^/]{1,63}$"
LABEL_VALUE_PATTERN = rf"^({QUALIFIED_NAME})?$"
