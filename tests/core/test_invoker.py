"""binder.invoker: which parameter gets the payload, which the envelope; sync/async/threads."""

import dataclasses
import threading
from typing import Any

import pytest

from binder.errors import DecodeError
from binder.invoker import Invoker
from binder.message import Message


@dataclasses.dataclass
class Order:
    id: int


def json_message(payload: bytes = b'{"id": 1}', **kwargs: Any) -> Message:
    return Message(payload, content_type="application/json", **kwargs)


async def test_payload_parameter_is_decoded_by_its_annotation() -> None:
    def handle(order: Order) -> Any:
        return order

    invoker = Invoker(handle)
    assert invoker.payload_param == "order"
    assert invoker.message_param is None
    assert await invoker(json_message()) == Order(1)


async def test_unannotated_payload_is_parsed_json() -> None:
    def handle(payload):  # type: ignore[no-untyped-def]
        return payload

    assert await Invoker(handle)(json_message(b"[1, 2]")) == [1, 2]


async def test_message_parameter_receives_the_envelope() -> None:
    seen: list[tuple[Any, Message]] = []

    def handle(payload: dict, msg: Message) -> None:
        seen.append((payload, msg))

    invoker = Invoker(handle)
    assert (invoker.payload_param, invoker.message_param) == ("payload", "msg")
    message = json_message(headers={"tenant": "a"}, key="k")
    await invoker(message)
    assert seen == [({"id": 1}, message)]
    assert seen[0][1] is message


async def test_message_only_handler_gets_the_envelope_without_decoding() -> None:
    def handle(msg: Message) -> bytes:
        return msg.payload

    invoker = Invoker(handle)
    assert invoker.payload_param is None
    assert invoker.decode is None
    # not JSON: nothing tries to decode it
    assert await invoker(json_message(b"\xff not json")) == b"\xff not json"


async def test_async_handler_is_awaited() -> None:
    async def handle(payload: dict) -> int:
        return payload["id"] + 1

    invoker = Invoker(handle)
    assert invoker.is_async
    assert await invoker(json_message()) == 2


async def test_sync_handler_runs_on_the_event_loop_thread() -> None:
    threads: list[int] = []

    def handle(payload: dict) -> None:
        threads.append(threading.get_ident())

    await Invoker(handle)(json_message())
    assert threads == [threading.get_ident()]


def test_plain_handlers_are_threaded_unless_asked_not_to_be() -> None:
    def handle(payload: dict) -> None: ...

    assert Invoker(handle).threaded
    assert not Invoker(handle, threaded=False).threaded


def test_threaded_flag_is_ignored_for_async_handlers() -> None:
    async def handle(payload: dict) -> None: ...

    assert not Invoker(handle, threaded=True).threaded


async def test_decode_error_reaches_the_caller_and_the_handler_is_not_called() -> None:
    calls: list[Any] = []

    def handle(payload: dict) -> None:
        calls.append(payload)

    with pytest.raises(DecodeError):
        await Invoker(handle)(json_message(b"[1]"))
    assert calls == []


async def test_extra_parameters_with_defaults_and_var_args_are_allowed() -> None:
    def handle(payload: dict, msg: Message, retries: int = 3, *args: Any, **kwargs: Any) -> int:
        return retries

    assert await Invoker(handle)(json_message()) == 3


def test_second_parameter_that_is_not_message_is_a_type_error() -> None:
    def handle(payload: dict, other: str) -> None: ...

    with pytest.raises(TypeError, match=r"handle: parameter 'other' is neither the payload"):
        Invoker(handle)


def test_payload_after_message_parameter_is_a_type_error() -> None:
    def handle(msg: Message, payload: dict) -> None: ...

    with pytest.raises(TypeError, match="'payload'"):
        Invoker(handle)


def test_unresolvable_annotation_is_a_type_error_naming_the_handler() -> None:
    def handle(payload: "NoSuchType") -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match="handler handle"):
        Invoker(handle)
