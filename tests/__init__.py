"""
The trial test suite. Hypothesis runs without per-example deadlines or the
"too slow" health check: CI machines are shared and noisy, and timing is
measured by bench/, never by tests.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "conduit",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("conduit")
