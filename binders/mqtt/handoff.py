"""Bounded intake from a consumer's socket: stop reading while too much is unsettled."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Intake"]


class Intake:
    """Count messages taken from the socket and not settled yet; bound them.

    Everything runs on the event loop thread (paho is driven by the loop, so its
    ``on_message`` runs there too, and the delivery engine settles there).  ``take``
    is called per received message; when ``capacity`` (the binding's prefetch)
    messages are unsettled it calls ``pause`` (the connection stops reading its
    socket, so TCP pushes back on the broker instead of memory growing), and
    ``release`` (on ack, nack or release of a delivery) calls ``resume`` once the
    count is back at the low-water mark (a quarter below capacity, so that a busy
    consumer does not re-register its socket for every message).  With QoS 1 and
    MQTT 5 the broker never has more than the receive maximum (by default the same
    prefetch) messages outstanding anyway.
    """

    def __init__(
        self, capacity: int, pause: Callable[[], None], resume: Callable[[], None]
    ) -> None:
        self.capacity = max(1, capacity)
        self._low_water = self.capacity - max(1, self.capacity // 4)
        self._pause = pause
        self._resume = resume
        #: Messages taken and not released yet.
        self.count = 0
        self.paused = False

    def take(self) -> None:
        """Account for one received message; pause reading at capacity."""
        self.count += 1
        if self.count >= self.capacity and not self.paused:
            self.paused = True
            self._pause()

    def release(self) -> None:
        """A message is settled; resume reading once below the low-water mark."""
        self.count -= 1
        if self.paused and self.count <= self._low_water:
            self.paused = False
            self._resume()
