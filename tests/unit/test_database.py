"""SQL sessions (lab.ops.database) without a cluster: who waits for whom while one is opened."""
from __future__ import annotations

import threading
import time

import pytest

from lab.ops import database
from lab.ops.database import Database
from lab.target import Target


@pytest.fixture
def opened(monkeypatch):
    """Sessions that record their opening; the one for namespace "slow" waits for ``gate``."""
    log: list[str] = []
    gate = threading.Event()

    class Opening:
        def __init__(self, db, name):
            log.append(db.namespace)
            if db.namespace == "slow":
                assert gate.wait(10)

    monkeypatch.setattr(database, "_Session", Opening)
    monkeypatch.setattr(database, "_sessions", {})
    monkeypatch.setattr(database, "_opening", {})
    return log, gate


def test_a_slow_opening_holds_up_only_its_own_session(opened):
    log, gate = opened
    slow, fast = Database(Target("k8s-lab", "slow")), Database(Target("k8s-lab", "fast"))
    waiting = threading.Thread(target=database._session, args=(slow, None))
    waiting.start()
    while "slow" not in log:
        time.sleep(0.01)
    started = time.monotonic()
    database._session(fast, None)  # another Pod's session opens while "slow" still connects
    assert time.monotonic() - started < 1 and waiting.is_alive()
    gate.set()
    waiting.join(10)


def test_threads_asking_for_one_session_open_it_once(opened):
    log, gate = opened
    slow = Database(Target("k8s-lab", "slow"))
    sessions = []
    threads = [threading.Thread(target=lambda: sessions.append(database._session(slow, "lab"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert log == ["slow"] and len(sessions) == 4 and len({id(s) for s in sessions}) == 1
