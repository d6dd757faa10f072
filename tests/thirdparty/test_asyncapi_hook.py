"""A third-party binder type describes its broker for ``binder asyncapi`` through an
optional ``asyncapi()`` method; one without it gets a placeholder server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from binder.asyncapi.protocols import Broker, Server, UnknownBroker, broker_for


class PigeonBroker(Broker):
    type_name = "pigeon"

    def server(self, name: str, settings: Mapping[str, Any]) -> Server:
        return Server({"host": f"{settings['loft']}:1", "protocol": "pigeon"})


class DescribedType:
    def asyncapi(self) -> Broker:
        return PigeonBroker()


def test_a_type_with_asyncapi_describes_itself_and_others_get_a_placeholder() -> None:
    broker = broker_for(DescribedType(), "pigeon")
    assert isinstance(broker, PigeonBroker)
    assert broker.server("p", {"loft": "roof"}).server == {"host": "roof:1", "protocol": "pigeon"}
    placeholder = broker_for(object(), "smoke-signals")
    assert isinstance(placeholder, UnknownBroker)
    assert placeholder.server("s", {}).server["protocol"] == "smoke-signals"
