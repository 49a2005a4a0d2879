"""`python -m sidecar` is the same as `llm-sidecar`."""

import sys

from sidecar.cli import main

sys.exit(main())
