"""An example third-party binder for eventbinder: in-process loopback queues."""

__version__ = "0.1.0"
