"""Track 1, queue fundamentals: one module per page of ``docs/fundamentals/``."""
