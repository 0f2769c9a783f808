"""The code of the page *Visibility timeouts & leases*
(``docs/fundamentals/visibility-timeouts.md``): a lease queue with heartbeats, its Lua scripts
beside it.
"""
