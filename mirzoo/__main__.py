"""``python -m mirzoo`` runs the command line."""

import sys

from mirzoo.cli import main

sys.exit(main())
