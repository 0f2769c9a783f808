"""The data of the page *Choosing a framework* (``docs/frameworks/choosing-a-framework.md``):
the settings-equivalence table and the framework defaults it is checked against.
"""
