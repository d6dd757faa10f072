"""The RabbitMQ binder (kombu / py-amqp); see :mod:`binders.rabbit.binder`."""
