"""JSON from callers, parsed only when it is safe to: bounded nesting, bounded numbers and
text that is valid Unicode. Python's parser recurses per level and refuses integers longer
than 4300 digits with a bare ValueError; both are checked here first, so neither the
admin API nor the static-credential scan can fail on what a caller sent.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

# Deeper than any config or payload this service accepts, far shallower than the stack.
MAX_DEPTH = 32
# One left-to-right pass: a string (to its closing quote, or the end when unterminated, so
# the scan stays linear), a bracket, or a run of digits.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]|\d+', re.S)


class UnsafeJson(ValueError):
    """What is wrong with the document, in words a caller can act on."""


class TooDeep(UnsafeJson):
    """Nested too deeply to parse safely."""


def _shape(text: str) -> tuple[int, int]:
    """How deeply arrays and objects nest in ``text``, and its longest run of digits (neither
    counting what is inside strings)."""
    deepest = level = longest = 0
    for token in _TOKEN.findall(text):
        if token in ("[", "{"):
            level += 1
            deepest = max(deepest, level)
        elif token in ("]", "}"):
            level -= 1
        elif token[0] != '"':
            longest = max(longest, len(token))
    return deepest, longest


def parse(text: str, where: str = "body") -> Any:
    """``text`` as JSON; :class:`UnsafeJson` naming ``where`` when it is not safe or not JSON."""
    deepest, longest = _shape(text)
    if deepest > MAX_DEPTH:
        raise TooDeep(f"{where} nests arrays or objects deeper than {MAX_DEPTH} levels")
    if longest > sys.get_int_max_str_digits():
        raise UnsafeJson(f"{where} holds a number longer than {sys.get_int_max_str_digits()} digits")
    try:
        value = json.loads(text)
    except ValueError as exc:
        position = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise UnsafeJson(f"{where} is not valid JSON{position}") from None
    if not is_text(json.dumps(value, ensure_ascii=False)):
        raise UnsafeJson(f"{where} holds a lone surrogate escape (\\ud800-\\udfff), which is not Unicode text")
    return value


def is_text(value: str) -> bool:
    """True when ``value`` is a string of Unicode scalar values (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
