"""eventbinder: event-driven services with decorated handlers and pluggable brokers.

>>> from binder import App
>>> app = App("billing")
"""

from binder.app import App
from binder.dead_letters import DeadLetter
from binder.errors import (
    BinderError,
    ConfigError,
    DecodeError,
    NotRunningError,
    PermanentError,
    UnsupportedFeature,
)
from binder.message import Message
from binder.running import AppRun  # also makes App.run work (it registers itself)

__all__ = [
    "App",
    "AppRun",
    "BinderError",
    "ConfigError",
    "DeadLetter",
    "DecodeError",
    "Message",
    "NotRunningError",
    "PermanentError",
    "UnsupportedFeature",
]

__version__ = "0.1.0"
