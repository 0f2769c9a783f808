"""The code of the page *Sidekiq, and enqueueing Sidekiq jobs from Python*
(``docs/frameworks/sidekiq.md``): Ruby jobs and a Python client that pushes jobs Sidekiq runs.
"""
