"""Redaction: the password of any URL with user info is masked wherever the URL
appears (alone, in lists, in ``;``/``,``-separated strings, under any key, in error
text), and the rest of the URL, the host first, is kept."""

from __future__ import annotations

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from binder.redaction import MASK, redact, redact_url, scrub, secret_values

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_UNRESERVED = _ALNUM + "-._~"
_SUB_DELIMS = "!$&'()*+,;="
# RFC 3986 user info: unreserved, %XX, sub-delims and ":"; passwords may also hold an
# unescaped "@" or "/" (the redaction masks up to the last "@" of the URL's user info).
pct = st.builds(
    lambda a, b: f"%{a}{b}",
    st.sampled_from("0123456789ABCDEF"),
    st.sampled_from("0123456789abcdef"),
)
passwords = st.lists(
    st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS + ":@/"), pct), min_size=1, max_size=16
).map("".join)
users = st.lists(st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS), pct), max_size=8).map(
    "".join
)
hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}", fullmatch=True),
    st.sampled_from(["[::1]", "127.0.0.1", "localhost"]),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
# Paths and queries without "@" (the user info runs to the last "@"; see the module).
rests = st.one_of(
    st.sampled_from(["", "/", "//", "/vhost", "?heartbeat=10", "/%2F?x=1"]),
    st.text(_UNRESERVED + "/:?=&", max_size=12).map(lambda s: "/" + s),
)
schemes = st.sampled_from(["amqp", "amqps", "mqtt", "mqtts", "kafka", "sasl+ssl", "http"])


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(url, password, host, the url as it must be shown)."""
    scheme, user, password = draw(schemes), draw(users), draw(passwords)
    host, port, rest = draw(hosts), draw(ports), draw(rests)
    shown = f"{scheme}://{user}:{MASK}@{host}{port}{rest}"
    # A password that is also a piece of what is shown cannot be told from it.
    assume(len(password) >= 3 and password not in shown)
    return f"{scheme}://{user}:{password}@{host}{port}{rest}", password, host, shown


@settings(max_examples=150)
@given(url=urls())
@example(url=("amqp://b://a@0", "//a", "0", "amqp://b:***@0"))  # "b://a" is no URL
@example(
    url=(
        "amqp://guest:p@ss:w/rd@localhost:5672//",
        "p@ss:w/rd",
        "localhost",
        "amqp://guest:***@localhost:5672//",
    )
)
def test_one_url(url: tuple[str, str, str, str]) -> None:
    text, password, host, shown = url
    redacted = redact_url(text)
    assert password not in redacted
    assert redacted == shown
    assert host in redacted
    assert password in secret_values(text)


@settings(max_examples=60)
@given(
    several=st.lists(urls(), min_size=1, max_size=4),
    separator=st.sampled_from([",", ";", " ", ", ", "; "]),
)
def test_lists_of_urls(several: list[tuple[str, str, str, str]], separator: str) -> None:
    texts = [u[0] for u in several]
    shown = [u[3] for u in several]
    for value, expected in (
        (separator.join(texts), separator.join(shown)),
        (texts, shown),
    ):
        redacted = redact_url(value)
        assert redacted == expected
    for _, password, host, _ in several:
        # Another URL of the list may show the password as part of its host or path.
        if not any(password in s for s in shown):
            assert password not in redact_url(separator.join(texts))
            assert password not in str(redact({"brokers": texts}))
        assert host in redact_url(separator.join(texts))


@settings(max_examples=200)
@given(
    url=urls(),
    key=st.sampled_from(["url", "urls", "bootstrap", "dsn"]),
    secret=st.text(_ALNUM, min_size=1).map(lambda s: f"Zq{s}"),  # no key holds "Zq"
)
def test_configuration_and_error_text(
    url: tuple[str, str, str, str], key: str, secret: str
) -> None:
    """In a configuration (a URL under any key, a value under a secret-named key) and in
    an error message built from it, no secret survives; the host does."""
    text, password, host, shown = url
    assume(secret not in shown and secret not in MASK)
    config = {"binders": {"bus": {key: text, "api_token": secret, "nested": [{"u": text}]}}}
    shown_config = redact(config, {"url"})
    flat = str(shown_config)
    assert password not in flat and secret not in flat
    assert host in flat
    message = f"cannot connect to {text} with token {secret} (key {key})"
    scrubbed = scrub(message, secret_values(config))
    assert password not in scrubbed and secret not in scrubbed
    assert host in scrubbed
