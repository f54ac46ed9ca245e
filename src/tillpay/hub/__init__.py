"""The RabbitMQ event hub: every outbox event published to the ``tillpay.events`` topic
exchange (when ``TILLPAY_BROKER_URL`` is set), for tillpay's own consumers and any system
that binds a queue to it."""
