"""Hypothesis settings for the property tests: no per-example deadline (examples write
files and parse documents, and a slow machine must not turn that into a failure), and
no "too slow" health check, which depends on the machine as well.  Each test sets its
own ``max_examples``; every run draws new examples, and failures found are replayed
from ``.hypothesis/`` first."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "eventbinder-properties", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("eventbinder-properties")
