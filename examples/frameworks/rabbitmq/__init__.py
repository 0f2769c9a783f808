"""The code of the page *Run RabbitMQ in production* (``docs/frameworks/rabbitmq.md``)."""
