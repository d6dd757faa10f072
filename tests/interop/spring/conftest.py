"""Fixtures of the Spring Cloud Stream interop tests.

* ``spring_jar`` (session): the app's jar, built once (or found fresh) with Maven; the
  tests using it are skipped where Java 17+ or Maven is missing (and fail in CI).
* ``spring``: a factory of Spring apps for one test, ``spring(broker, properties)``,
  each logging to the test's ``tmp_path``; use the app with ``async with`` (ready on
  entry, stopped on exit). Anything still running at the end of the test is stopped.
* ``broker``: ``"rabbit"`` and ``"kafka"``, each with its ``broker`` mark: a test that
  takes it runs on both brokers.
* ``eventbinder_config``: the eventbinder configuration for that broker
  (:func:`eventbinder_settings`).
* RabbitMQ queues and exchanges named with :func:`tests.rabbit.support.fresh` and
  registered with ``delete_later`` are deleted after each test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.interop.spring.springapp import (
    SpringApp,
    SpringFactory,
    build_app,
    require_java_and_maven,
    spring_app,
)
from tests.interop.spring.support import eventbinder_settings
from tests.rabbit.support import delete_tracked


@pytest.fixture(scope="session")
def spring_jar() -> Path:
    """The Spring app's executable jar, built when missing or out of date."""
    require_java_and_maven()
    return build_app()


@pytest.fixture
def spring(spring_jar: Path, tmp_path: Path) -> Iterator[SpringFactory]:
    """Make Spring apps for this test (logs: ``<tmp_path>/<name>-<n>.log``)."""
    made: list[SpringApp] = []

    def make(broker: str, properties: Mapping[str, str], *, name: str = "spring") -> SpringApp:
        app = spring_app(
            broker, properties, log_path=tmp_path / f"{name}-{len(made)}.log", jar=spring_jar
        )
        made.append(app)
        return app

    yield make
    for app in made:
        app.stop()


@pytest.fixture(
    params=[
        pytest.param("rabbit", marks=pytest.mark.broker("rabbit")),
        pytest.param("kafka", marks=pytest.mark.broker("kafka")),
    ]
)
def broker(request: pytest.FixtureRequest) -> str:
    """The broker of this run of the test: rabbit, then kafka."""
    return str(request.param)


@pytest.fixture
def eventbinder_config(broker: str) -> dict[str, Any]:
    """An eventbinder configuration for ``run_app`` on the local ``broker``."""
    return eventbinder_settings(broker)


@pytest.fixture(autouse=True)
def _delete_rabbit_topology() -> Iterator[None]:
    """Durable test queues would pile up on the broker: delete what tests registered."""
    yield
    delete_tracked()
