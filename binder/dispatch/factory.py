"""Choosing and starting the dispatcher a binding's handler calls for."""

from __future__ import annotations

from collections.abc import Callable

from binder.dispatch.engine import Dispatcher
from binder.dispatch.loop_dispatcher import LoopDispatcher
from binder.dispatch.plan import BindingStats, DispatchPlan
from binder.dispatch.thread_dispatcher import ThreadDispatcher

__all__ = ["create_dispatcher"]


def create_dispatcher(
    plan: DispatchPlan,
    *,
    stats: BindingStats | None = None,
    on_handled: Callable[[], None] | None = None,
) -> Dispatcher:
    """The dispatcher ``plan`` calls for, started.

    Plain ``def`` handlers run in worker threads unless ``plan.threaded`` is false or
    plugin middleware wraps the attempts (middleware is asynchronous, so each attempt
    then goes through the loop, and through a thread for the handler call).
    """
    call = plan.call
    if not call.is_async and plan.threaded and not plan.middleware:
        dispatcher: Dispatcher = ThreadDispatcher(plan, stats=stats, on_handled=on_handled)
    else:
        dispatcher = LoopDispatcher(plan, stats=stats, on_handled=on_handled)
    dispatcher.start()
    return dispatcher
