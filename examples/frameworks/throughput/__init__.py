"""The code of the page *Throughput ceilings* (``docs/frameworks/throughput.md``): the batched
reliable queue. The benchmark that measures it is ``labs/throughput.py``.
"""
