"""The code of the page *Choosing a broker by measurement*
(``docs/frameworks/choosing-a-broker.md``): one producer and one consumer per broker, all at
the same guarantee (acknowledged after the work, producer confirmed), in
:mod:`.contenders`; the benchmark that runs them is :mod:`labs.broker_bench`.
"""
