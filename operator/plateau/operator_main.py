"""`plateau-operator`: placeholder until the operator lands (issue: the operator)."""

from __future__ import annotations

import sys


def main() -> int:
    print("plateau-operator: the Kopf operator is not part of this build yet", file=sys.stderr)
    return 1
