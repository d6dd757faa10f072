"""Exceptions raised by eventbinder, in one place so users can catch them by type."""

from __future__ import annotations

__all__ = [
    "AccessRefused",
    "BinderError",
    "BindingNotFound",
    "ConfigError",
    "DecodeError",
    "MissingDependency",
    "NotRunningError",
    "PermanentError",
    "TlsRefused",
    "UnsupportedFeature",
    "describe_error",
]


class BinderError(Exception):
    """Base class of every error eventbinder raises on purpose."""


class ConfigError(BinderError):
    """A configuration file, mapping or environment variable is invalid.

    The message names the source (file path or ``<mapping>``), the key path such as
    ``bindings.bill-in-0.max_attempts`` and, for YAML files, the line.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = message
        self.source = source
        self.key = key
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.source or "<config>"
        if self.line is not None:
            where += f", line {self.line}"
        if self.key:
            where += f", key '{self.key}'"
        return f"{where}: {self.reason}"


class AccessRefused(BinderError):
    """The broker refused the client: wrong credentials, or no permission for a virtual
    host, topic, group or subscription.

    Binders raise it from :meth:`~binder.spi.Binder.start` (and from binding) instead
    of a connection error. It is not transient: the runtime fails at once rather than
    retrying, unless ``runtime.retry_access_refused`` is true. The message names what
    was refused and never holds a secret.
    """


class TlsRefused(AccessRefused):
    """A TLS handshake failed for a reason retrying cannot fix: the broker's
    certificate is not signed by a trusted CA, has expired or names another host, or
    the broker refused the client's certificate.

    Like :class:`AccessRefused` it ends the start at once; the message says which of
    these it was (:func:`binder.tls.tls_refusal`).
    """


class MissingDependency(BinderError):
    """A binder type's client library is not installed (``pip install
    'eventbinder[rabbit]'`` and the like); the message says what to install."""


class UnsupportedFeature(BinderError):
    """A binding asks for something its binder declared it cannot do.

    Raised at bind time, never later, so a misconfiguration cannot misbehave silently.
    """


class DecodeError(BinderError):
    """A payload could not be decoded into the type the handler asked for.

    Such messages go straight to the dead letters: retrying cannot fix them.
    """


class PermanentError(BinderError):
    """Raise from a handler to skip the remaining retries and dead-letter at once."""


class NotRunningError(BinderError):
    """An operation needs a running app (for example ``App.send``) and there is none."""


class BindingNotFound(BinderError):
    """A binding name the app does not have (the bindings endpoint answers 404)."""


def describe_error(exc: BaseException) -> str:
    """One line for a log or an error message: eventbinder's own errors by their
    message (already worded for users), anything else as ``Type: message``."""
    text = str(exc).strip()
    if isinstance(exc, BinderError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
