"""Exceptions that carry what went wrong and what to do next."""
from __future__ import annotations


class LabError(Exception):
    """An error a student or instructor can act on: a message plus a hint."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message
