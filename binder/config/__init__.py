"""Configuration: a file (YAML or TOML) plus environment variables -> validated settings.

Shape (see docs/configuration.md for the full reference)::

    default_binder: rabbit
    binders:
      rabbit: {type: rabbit, url: amqp://guest:guest@localhost:5672//}
      memory: {type: memory}
    bindings:
      default: {max_attempts: 3}
      bill-in-0: {destination: orders, group: billing, binder: rabbit, prefetch: 10}

Every :class:`ConfigError` raised here names its source (the file, ``<mapping>`` or
``environment variable EVENTBINDER_...``), the dotted key path and, for YAML files, the
1-based line of that key.  Error messages never contain secret values.

The package's modules, in the order loading uses them: :mod:`~binder.config.sources`
(find and read the file), :mod:`~binder.config.environment` (``EVENTBINDER_*``
overrides), :mod:`~binder.config.validation` and :mod:`~binder.config.layers`
(checks), :mod:`~binder.config.model` (the result, :class:`Settings`), with
:mod:`~binder.config.loading` running them and :mod:`~binder.config.keys` locating
keys for error messages.
"""

from binder.config.environment import ENV_PREFIX
from binder.config.loading import load_settings
from binder.config.model import DEFAULT_LAYER as DEFAULT_LAYER
from binder.config.model import IMPLICIT_BINDER as IMPLICIT_BINDER
from binder.config.model import MANAGEMENT_SCHEMA as MANAGEMENT_SCHEMA
from binder.config.model import RUNTIME_SCHEMA as RUNTIME_SCHEMA
from binder.config.model import TOP_LEVEL_KEYS as TOP_LEVEL_KEYS
from binder.config.model import BinderConfig, Settings
from binder.config.sources import CONFIG_ENV, CONFIG_FILENAMES, find_config_file

# The ``as`` imports keep the shape constants importable from here, as they were before
# the split, without adding them to __all__ (they were not in it then either).
__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILENAMES",
    "ENV_PREFIX",
    "BinderConfig",
    "Settings",
    "find_config_file",
    "load_settings",
]
