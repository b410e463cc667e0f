"""``python -m bigdl_medimg``: the same as the ``bigdl-medimg`` command."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
