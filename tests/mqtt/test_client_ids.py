"""Group consumers' client ids: stable across restarts, distinct while both live."""

from __future__ import annotations

import subprocess
import sys
import uuid

from binders.mqtt.client_ids import claim_client_id


def test_a_live_claim_pushes_the_next_consumer_to_a_suffixed_id() -> None:
    base = f"svc-g-{uuid.uuid4().hex[:8]}-0"
    first = claim_client_id(base, "127.0.0.1:1883")
    second = claim_client_id(base, "127.0.0.1:1883")
    other_broker = claim_client_id(base, "10.0.0.9:1883")
    assert (first.client_id, second.client_id) == (base, f"{base}-2")
    assert other_broker.client_id == base, "claims are per broker address"
    first.release()
    first.release()  # idempotent
    again = claim_client_id(base, "127.0.0.1:1883")
    assert again.client_id == base, "a released id is reused (the session comes back)"
    for claim in (second, other_broker, again):
        claim.release()


def test_another_process_cannot_take_a_live_id_but_gets_it_after_exit() -> None:
    base = f"svc-g-{uuid.uuid4().hex[:8]}-0"
    probe = (
        "from binders.mqtt.client_ids import claim_client_id;"
        f"print(claim_client_id({base!r}, '127.0.0.1:1883').client_id)"
    )
    held = claim_client_id(base, "127.0.0.1:1883")
    other = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert other.stdout.strip() == f"{base}-2", other.stderr
    held.release()
    again = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert again.stdout.strip() == base, again.stderr
