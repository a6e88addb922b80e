"""lab.memo: answers remembered in the lab cache across processes."""
from __future__ import annotations

import pytest

from lab import memo


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_only_what_is_not_known_yet_is_asked_and_in_one_call():
    asked = []

    def ask(keys):
        asked.append(keys)
        return {k: k.upper() for k in keys}

    assert memo.recall("m", ["a", "b"], ask) == {"a": "A", "b": "B"}
    assert memo.recall("m", ["b", "c"], ask) == {"b": "B", "c": "C"}
    assert asked == [["a", "b"], ["c"]]


def test_a_none_answer_is_asked_again_next_time():
    answers = iter([None, "v1.2.3"])
    assert memo.recall_one("m", "k", lambda: next(answers)) is None
    assert memo.recall_one("m", "k", lambda: next(answers)) == "v1.2.3"
    assert memo.recall_one("m", "k", lambda: pytest.fail("remembered")) == "v1.2.3"


def test_an_answer_that_is_no_longer_valid_is_asked_again(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    assert memo.recall_one("dirs", "mod@v1", lambda: str(gone), valid=lambda d: (tmp_path / d).is_dir()) == str(gone)
    gone.rmdir()
    again = tmp_path / "again"
    again.mkdir()
    assert memo.recall_one("dirs", "mod@v1", lambda: str(again), valid=lambda d: (tmp_path / d).is_dir()) == str(again)


def test_a_damaged_memo_only_costs_the_question(cache):
    (cache / "m.json").write_text("{not json")
    assert memo.recall_one("m", "k", lambda: 1) == 1
    assert memo.recall_one("m", "k", lambda: pytest.fail("remembered")) == 1


def test_a_binary_s_key_changes_with_the_binary(tmp_path):
    binary = tmp_path / "tool"
    binary.write_text("one")
    first = memo.file_key(binary)
    binary.write_text("three")
    assert first and memo.file_key(binary) != first
    assert memo.file_key(tmp_path / "absent") is None


def test_go_is_asked_its_version_again_when_its_settings_change(tmp_path, monkeypatch):
    """`go env -w GOTOOLCHAIN=...` makes the same binary another toolchain: the settings file is
    part of the key; GOTOOLCHAIN in the environment means asking every time."""
    import shutil
    import types

    from lab import runner
    from lab.host import gobuild

    go = tmp_path / "go"
    go.write_text("#!/bin/sh\n")
    settings = tmp_path / "go-env"
    monkeypatch.setattr(shutil, "which", lambda name: str(go))
    monkeypatch.setenv("GOENV", str(settings))
    monkeypatch.delenv("GOTOOLCHAIN", raising=False)
    asked = []
    monkeypatch.setattr(runner, "run", lambda argv, **k: asked.append(argv) or types.SimpleNamespace(stdout="go1.24.1\n"))

    def version():
        gobuild.go_version.cache_clear()
        return gobuild.go_version()

    assert [version(), version()] == ["go1.24.1", "go1.24.1"] and len(asked) == 1
    settings.write_text("GOTOOLCHAIN=go1.25.0\n")
    version()
    assert len(asked) == 2
    monkeypatch.setenv("GOTOOLCHAIN", "go1.25.0")
    version()
    version()
    assert len(asked) == 4
    gobuild.go_version.cache_clear()
