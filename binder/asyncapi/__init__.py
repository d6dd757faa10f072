"""The AsyncAPI 3.0.0 document of an app: ``binder asyncapi TARGET``.

:func:`asyncapi_document` describes an app's bindings as the configuration resolves
them: a server per binder used, a channel per destination, a ``receive`` operation per
input binding and a ``send`` operation per output binding, and the payloads' JSON
Schemas derived from the handlers' annotations.  The modules, one job each:

- :mod:`~binder.asyncapi.document`: assembling the document;
- :mod:`~binder.asyncapi.schemas`: annotations -> JSON Schema;
- :mod:`~binder.asyncapi.models`: pydantic models' own schemas, adapted to AsyncAPI;
- :mod:`~binder.asyncapi.protocols`: what each binder type's broker looks like in
  AsyncAPI (servers, security schemes, channel and operation bindings);
- :mod:`~binder.asyncapi.addresses`: broker addresses out of URLs, without credentials.

See docs/asyncapi.md.
"""

from binder.asyncapi.document import (
    ASYNCAPI_VERSION,
    DEFAULT_APP_VERSION,
    asyncapi_document,
    payload_annotations,
)
from binder.asyncapi.schemas import SchemaSet

__all__ = [
    "ASYNCAPI_VERSION",
    "DEFAULT_APP_VERSION",
    "SchemaSet",
    "asyncapi_document",
    "payload_annotations",
]
