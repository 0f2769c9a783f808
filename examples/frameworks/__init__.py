"""Track 2, backend frameworks and worker scaling: one module (or folder) per page of
``docs/frameworks/``.
"""
