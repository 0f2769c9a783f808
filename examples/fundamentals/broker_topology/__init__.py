"""The code of the page *Choose a broker and lay out its queues*
(``docs/fundamentals/broker-topology.md``): Redis streams, priorities and delayed jobs, RabbitMQ
and Amazon SQS queues.
"""
