"""The fuzz tests' hypothesis profiles (tests/fuzz/inputs.py picks one): `fuzz-short` for
`make test`, `fuzz` (HYPOTHESIS_PROFILE=fuzz) for a long run. Registered, not loaded, so the
other tests' profiles stay as they are."""
from hypothesis import settings

settings.register_profile("fuzz-short", max_examples=200, deadline=None)
settings.register_profile("fuzz", max_examples=5_000, deadline=None)
