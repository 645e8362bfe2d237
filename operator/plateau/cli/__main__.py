"""`python -m plateau.cli`: the same as the `plateau` command."""

import sys

from plateau.cli.main import main

sys.exit(main())
