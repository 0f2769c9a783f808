"""The code of the page *Run RQ in production* (``docs/frameworks/rq.md``).
"""
