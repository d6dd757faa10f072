"""The Kafka binder (aiokafka): topic = destination, consumer group = group.

Only :mod:`binders.kafka.plugin` and :mod:`binders.kafka.settings` are imported when
the plugin registry loads; everything that needs aiokafka is imported lazily by
``KafkaBinderType.create``.
"""
