"""``python -m fp8conv.options [--check README.md | --write README.md]``: the README's option table."""

import sys

from fp8conv.options.table import main

sys.exit(main())
