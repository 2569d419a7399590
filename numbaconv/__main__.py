"""``python -m numbaconv`` is the ``numbaconv`` command."""

import sys

from .cli import main

sys.exit(main())
