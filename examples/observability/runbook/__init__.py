"""The data of the page *Runbook: symptom → cause → fix* (``docs/observability/runbook.md``):
the entries in TOML and the loader that checks them.
"""
