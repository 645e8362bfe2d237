"""Bad input from a user's file or flag: one line naming the file, line and column or field. Pure."""

from __future__ import annotations


class InputError(Exception):
    """Bad input, with a message naming the file, line and column or field."""
