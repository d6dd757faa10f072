"""What went wrong with an MQTT broker, in one sentence each.

paho reports a refused CONNECT, SUBSCRIBE or PUBLISH as reason codes and a dropped
connection as "connection lost"; this module words them for a user: a refusal of the
client itself (bad user name or password, not authorized, banned) or of a topic (not
authorized) is :class:`~binder.errors.AccessRefused`, anything else
:class:`MqttConnectionError`; a port that closes or resets the connection before any
CONNACK is named as such ("is it an MQTT broker?").  TLS failures are worded by
:mod:`binders.mqtt.tls`.  No text made here holds a password.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from paho.mqtt.reasoncodes import ReasonCode

from binder.errors import AccessRefused, BinderError, describe_error
from binders.mqtt.settings import ConnectionSettings

__all__ = [
    "DROPPED",
    "MqttConnectionError",
    "connect_refused",
    "connect_unanswered",
    "connection_loss",
    "dropped_how",
    "publish_refused",
    "reason_name",
    "subscription_refused",
]

_UNSPECIFIED = 0x80  # paho's reason for a connection that ended without DISCONNECT
_PROTOCOL_ERROR = 0x82  # paho's disconnect reason for bytes that are not MQTT
_NOT_AUTHORIZED = 0x87
_BANNED = 0x8A
_KEEPALIVE_TIMEOUT = 0x8D
#: CONNACK reasons that refuse the client itself: bad user name or password, not
#: authorized, banned (MQTT 3.1.1 return codes 4 and 5 arrive as 0x86 and 0x87).
_ACCESS_REFUSED = frozenset({0x86, _NOT_AUTHORIZED, _BANNED})
#: Errors of a TCP connection that was accepted and then closed or reset.
DROPPED = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


class MqttConnectionError(BinderError):
    """The broker could not be reached, refused the connection or dropped a request."""


def reason_name(reason: ReasonCode) -> str:
    """The reason code's name as the MQTT specification words it."""
    return str(getattr(reason, "getName", lambda: str(reason))())


def dropped_how(error: OSError | None) -> str:
    """ "reset" for a connection reset (RST), else "closed" (an orderly close, or a
    write into a connection the peer had closed: EPIPE)."""
    return (
        "reset" if isinstance(error, (ConnectionResetError, ConnectionAbortedError)) else "closed"
    )


def connect_refused(settings: ConnectionSettings, reason: ReasonCode, where: str) -> BinderError:
    """The error for a CONNACK refusing the connection: AccessRefused for the
    client's credentials or permissions, MqttConnectionError otherwise."""
    text = f"{where} refused the connection: {reason_name(reason)}"
    if reason.value not in _ACCESS_REFUSED:
        return MqttConnectionError(text)
    if reason.value != _BANNED:  # nothing to check in the settings
        user = settings.username
        if user is None:
            text += " (the binder sent no username: set username and password)"
        else:
            text += f" (user {user!r}: check the binder's username and password)"
    return AccessRefused(text)


def connect_unanswered(
    settings: ConnectionSettings,
    reason: ReasonCode | None,
    from_broker: bool,
    error: OSError | None,
) -> str:
    """Why the first CONNECT got no CONNACK, when the connection ended without one
    (``reason``: paho's or the broker's disconnect reason; ``None`` when the
    connection was dropped while paho was still connecting)."""
    address = settings.address
    code = reason.value if reason is not None else None
    if from_broker and reason is not None:  # an MQTT 5 DISCONNECT with its reason
        return (
            f"the MQTT broker at {address} disconnected before answering CONNECT: "
            f"{reason_name(reason)}"
        )
    if code == _PROTOCOL_ERROR:
        what = "answered CONNECT with something that is not MQTT"
    elif code == _KEEPALIVE_TIMEOUT:
        what = f"did not answer CONNECT within the keepalive ({settings.keepalive}s)"
    elif isinstance(error, ssl.SSLError):
        what = f"ended the connection before answering CONNECT ({describe_error(error)})"
    else:
        what = f"{dropped_how(error)} the connection before answering CONNECT"
    return f"{address} {what}: is it an MQTT broker?"


def subscription_refused(
    settings: ConnectionSettings, topic_filter: str, reason: ReasonCode, binding: str | None
) -> BinderError:
    """The error for a SUBACK refusing ``topic_filter``: AccessRefused for *not
    authorized* (MQTT 5), else MqttConnectionError (MQTT 3.1.1 gives no reason)."""
    text = (
        f"the MQTT broker at {settings.address} refused the subscription to "
        f"{topic_filter!r}: {reason_name(reason)}"
    )
    if binding is not None:
        text = f"binding {binding}: {text}"
    who = _who(settings)
    if reason.value == _NOT_AUTHORIZED:
        return AccessRefused(f"{text} (the broker does not let {who} subscribe to it)")
    if not settings.mqtt5:
        text += (
            f" (MQTT 3.1.1 gives no reason; most often the broker does not let {who} "
            "subscribe to it)"
        )
    return MqttConnectionError(text)


def publish_refused(
    settings: ConnectionSettings, topic: str | None, reason: ReasonCode
) -> BinderError:
    """The error for a PUBACK refusing a QoS 1 message (MQTT 5; an MQTT 3.1.1 PUBACK
    has no reason, so a broker that drops the message says nothing).

    *Not authorized* (Mosquitto's answer when its ACL does not let the user publish to
    the topic) is :class:`~binder.errors.AccessRefused`, any other refusal (quota
    exceeded, payload format invalid, ...) :class:`MqttConnectionError`.
    """
    to = f" to {topic!r}" if topic is not None else ""
    text = f"the MQTT broker at {settings.address} refused the message{to}: {reason_name(reason)}"
    if reason.value != _NOT_AUTHORIZED:
        return MqttConnectionError(text)
    it = "it" if topic is not None else "the topic"
    return AccessRefused(f"{text} (the broker does not let {_who(settings)} publish to {it})")


def _who(settings: ConnectionSettings) -> str:
    """The client as the broker knows it: its user name, or (no user name, a client
    certificate) the certificate's identity, else anonymous."""
    if settings.username is not None:
        return f"user {settings.username!r}"
    tls = settings.tls
    if isinstance(tls, Mapping) and tls.get("certfile"):
        return "the user of the client certificate (tls.certfile)"
    return "an anonymous client"


def connection_loss(reason: ReasonCode, from_broker: bool, error: OSError | None) -> str:
    """Why a connection ended: the socket error if there was one, else the reason."""
    if error is not None:
        return describe_error(error)
    if from_broker:
        return f"the broker disconnected: {reason_name(reason)}"
    if reason.value == _UNSPECIFIED:  # paho's reason for a connection that just ended
        return "the broker closed the connection"
    return reason_name(reason)
