"""`python -m embedpipe.cli`."""

import sys

from embedpipe.cli.commands import main

sys.exit(main())
