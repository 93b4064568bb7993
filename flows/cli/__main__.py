"""`python -m flows.cli`: the `ccforge` command without its console script."""

import sys

from flows.cli.main import main

sys.exit(main())
