"""MQTT binder (paho-mqtt 2.x): topics, shared subscriptions for groups, MQTT 5 properties.

The client library is imported only by :mod:`binders.mqtt.binder` and the modules it
uses; :mod:`binders.mqtt.plugin` and :mod:`binders.mqtt.settings` never import it.
"""
