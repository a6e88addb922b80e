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


class ScriptedExec:
    """An exec's websocket, as the client library's WSClient behaves: each update() takes the next
    frame that has arrived, or waits ``timeout`` when none has; reading a channel with nothing
    buffered first takes what has arrived (update(0)), whatever its channel."""

    def __init__(self, frames):
        self.frames, self.channels, self.sent = list(frames), {}, []

    def is_open(self):
        return True

    def write_stdin(self, data):
        self.sent.append(data)

    def update(self, timeout=0):
        if self.frames:
            channel, data = self.frames.pop(0)
            self.channels[channel] = self.channels.get(channel, b"") + data
        elif timeout:
            time.sleep(timeout)

    def read_channel(self, channel, timeout=0):
        if channel not in self.channels:
            self.update(timeout)
        return self.channels.pop(channel, b"")


def test_an_answer_read_off_the_socket_early_is_not_held_a_second(monkeypatch):
    import itertools

    session = object.__new__(database._Session)
    # The rows arrive, then the marker, just as the read of stderr looks at the socket.
    session._ws = ScriptedExec([(1, b"42\n"), (1, b"end-1\n")])
    session._marker, session._requests = "end", itertools.count(1)
    started = time.monotonic()
    assert session.ask("SELECT 42;", timeout=30) == ["42"]
    assert time.monotonic() - started < 0.5
    assert session._ws.sent == [b"SELECT 42;\nSELECT 'end-1';\n"]
