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
