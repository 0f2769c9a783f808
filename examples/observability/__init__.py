"""Track 3, observability and monitoring: one module per page of ``docs/observability/``."""
