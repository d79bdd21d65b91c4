"""`python -m cli`: the same as `oasis-autoscaler`."""

import sys

from cli.main import main

sys.exit(main())
