"""Print the feature tables of every observation variant (the source of docs/observations.md)."""

import sys

from townlet.observations.layout import document

sys.stdout.write(document())
