"""labelloop_local: the `labelloop` command and the local stack (never deployed)."""

from pathlib import Path

# The repository this package is installed from (editable install: local/labelloop_local/ in it).
REPOSITORY = Path(__file__).resolve().parents[2]
