"""The delivery engine: ordering, concurrency, retries, dead letters and pipelined
settlement, written once for every binder (see :mod:`binder.dispatch.engine`)."""

from binder.dispatch.calls import HandlerCall, RawCall
from binder.dispatch.engine import Dispatcher
from binder.dispatch.factory import create_dispatcher
from binder.dispatch.loop_dispatcher import LoopDispatcher
from binder.dispatch.plan import BindingStats, DispatchPlan
from binder.dispatch.retry import OutputFailed, RetryPolicy, is_permanent
from binder.dispatch.thread_dispatcher import ThreadDispatcher
from binder.dispatch.threads import CallThreads, WorkerThreads
from binder.dispatch.watchdog import LoopWatchdog

__all__ = [
    "BindingStats",
    "CallThreads",
    "DispatchPlan",
    "Dispatcher",
    "HandlerCall",
    "LoopDispatcher",
    "LoopWatchdog",
    "OutputFailed",
    "RawCall",
    "RetryPolicy",
    "ThreadDispatcher",
    "WorkerThreads",
    "create_dispatcher",
    "is_permanent",
]
