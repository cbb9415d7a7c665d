"""Reading a request's JSON body, field by field, with a 4xx that names what was wrong.

Every rule a request must meet lives here (docs/explain-api.md lists them), so the
routes in app.py read as "take the prompt, the temperature, ..." and a bad value is
one `BadRequest` with the field's name, never a traceback or a 500.
"""

from __future__ import annotations

import json
import math

from chalklm.errors import ChalkError

MAX_BODY = 64 * 1024  # bytes: a prompt is at most a context, far below this
MAX_NEW_TOKENS = 500  # the most tokens one /api/generate may ask for
ENGINES = ("torch", "scratch")


class BadRequest(ChalkError):
    """A request the server refuses: `status` (400, 404, 413, ...) and one line why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_body(body: bytes) -> dict:
    """The JSON object a POST carries; over 64 KB or not a JSON object is refused."""
    if len(body) > MAX_BODY:
        raise BadRequest(f"the request body is {len(body)} bytes; the limit is {MAX_BODY}", 413)
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"malformed JSON in the request body ({exc})") from None
    except RecursionError:
        raise BadRequest("the request body nests its JSON too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object, e.g. {\"prompt\": \"ROMEO:\"}")
    return data


def text(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"{key!r} must be a string of text, got {_shown(value)}")
    if not value:
        raise BadRequest(f"{key!r} is empty; type at least one character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON can spell half of a character pair: "\ud800"
        raise BadRequest(f"{key!r} holds a broken character (a lone UTF-16 surrogate)") from None
    return value


def number(data: dict, key: str, default: float, low: float, high: float = math.inf,
           low_open: bool = True, wanted: str = "") -> float:
    """A number in (low, high] (or [low, high] with low_open=False)."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{key!r} must be a number, got {_shown(value)}")
    below = value <= low if low_open else value < low
    if below or value > high:
        raise BadRequest(f"{key!r} must be {wanted}, got {value}")
    return float(value)


def whole(data: dict, key: str, default: int | None, low: int, high: int) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key!r} must be a whole number, got {_shown(value)}")
    if not low <= value <= high:
        raise BadRequest(f"{key!r} must be from {low} to {high}, got {value}")
    return value


def temperature(data: dict) -> float:
    return number(data, "temperature", 1.0, 0.0, wanted="above 0 (use \"greedy\": true "
                  "for the highest-scoring token)")


def top_p(data: dict) -> float | None:
    if data.get("top_p") is None:
        return None
    return number(data, "top_p", 1.0, 0.0, 1.0, wanted="in (0, 1] (1 keeps every token)")


def choice(data: dict, key: str, allowed, default: str) -> str:
    value = data.get(key, default)
    if value not in allowed:
        raise BadRequest(f"{key!r} must be one of {', '.join(allowed)}, got {_shown(value)}")
    return value


def flag(data: dict, key: str, default: bool = False) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key!r} must be true or false, got {_shown(value)}")
    return value


def _shown(value) -> str:
    shown = json.dumps(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
