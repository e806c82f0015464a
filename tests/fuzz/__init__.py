"""Fuzz tests (security issue 16): every parser of outside input, fed arbitrary and mutated
valid inputs, refuses with its module's documented error, never another exception, never a
5xx, and changes nothing when it refuses. `make test` runs the short profile; the long one:
HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest -q tests/fuzz."""
