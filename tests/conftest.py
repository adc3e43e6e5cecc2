"""Shared test setup: 8 simulated CPU devices and fp32 matmuls, set before JAX starts, and
the hypothesis profiles.

Hypothesis: the "ci" profile (loaded when the `CI` environment variable is set, or by
`HYPOTHESIS_PROFILE=ci`) derandomizes the examples, so a CI run is reproducible and a failure
there fails the same way locally under the same profile; it fixes the number of examples a
test without its own `max_examples` gets, turns off the deadline (a shared machine's timing
noise is not a failure) and keeps no example database. Locally the default profile applies
(random examples, so new ones keep being tried), unless `HYPOTHESIS_PROFILE` names another.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

CI_MAX_EXAMPLES = 50

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=CI_MAX_EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=(HealthCheck.too_slow,),
)
settings.register_profile("dev", deadline=None)
_profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else None)
if _profile:
    settings.load_profile(_profile)
