"""The code of the page *Delivery guarantees* (``docs/fundamentals/delivery-guarantees.md``):
at-most-once and reliable queues, the idempotent consumer and the transactional outbox.
"""
