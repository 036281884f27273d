"""One parameter parser for callbacks, URL state, the JSON API and the CLIs.

Every bad value raises :class:`~analysis.errors.InputError` with a message that names the parameter and
its bound ("Window width must be a whole number from 1 to 256; got 1000."), never a silent default or a
clamp. ``field`` (a component id) travels with the error so the page marks that field. Values may arrive
as numbers (Dash inputs), strings (URLs, the API, the CLI) or None (an empty box).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from analysis.errors import InputError

T = TypeVar("T")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
_parsed: ContextVar[list[str] | None] = ContextVar("glassbox_parsed_fields", default=None)


@contextmanager
def track_fields() -> Iterator[list[str]]:
    """Collect the ``field`` ids parsed successfully inside the block (the page clears their marks)."""
    fields: list[str] = []
    token = _parsed.set(fields)
    try:
        yield fields
    finally:
        _parsed.reset(token)


def parsed_fields() -> list[str]:
    """The fields parsed so far in the current tracking block ([] outside one)."""
    return list(_parsed.get() or [])


def _ok(value: T, field: str | None) -> T:
    fields = _parsed.get()
    if field and fields is not None:
        fields.append(field)
    return value


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _bound_text(low: float | None, high: float | None, fmt: str = "{:,}") -> str:
    if low is not None and high is not None:
        return f"from {fmt.format(low)} to {fmt.format(high)}"
    if low is not None:
        return f">= {fmt.format(low)}"
    if high is not None:
        return f"<= {fmt.format(high)}"
    return ""


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _missing(name: str, default: Any, field: str | None) -> Any:
    if default is REQUIRED:
        raise InputError(f"{name} is required.", field=field)
    return _ok(default, field)


def parse_int(value: Any, name: str, low: int | None = None, high: int | None = None, *,
              default: Any = REQUIRED, field: str | None = None) -> int:
    """A whole number within [low, high] (either end optional). ``default`` when the value is empty."""
    if _empty(value):
        return _missing(name, default, field)
    bounds = _bound_text(low, high)
    wanted = f"{name} must be a whole number" + (f" {bounds}" if bounds else "")
    if isinstance(value, bool):
        raise InputError(f"{wanted}; got {_show(value)}.", field=field)
    try:
        number = float(str(value).strip().replace("_", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InputError(f"{wanted}; got {_show(value)}.", field=field) from None
    if not math.isfinite(number) or number != int(number):
        raise InputError(f"{wanted}; got {_show(value)}.", field=field)
    out = int(number)
    if (low is not None and out < low) or (high is not None and out > high):
        raise InputError(f"{wanted}; got {out:,}.", field=field)
    return _ok(out, field)


def parse_float(value: Any, name: str, low: float | None = None, high: float | None = None, *,
                default: Any = REQUIRED, field: str | None = None, low_open: bool = False,
                high_open: bool = False) -> float:
    """A finite number within [low, high] (or (low, ...) / (..., high) when ``low_open`` / ``high_open``)."""
    if _empty(value):
        return _missing(name, default, field)
    lo = "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
    hi = "" if high is None else (f"< {high:g}" if high_open else f"<= {high:g}")
    bounds = " and ".join(b for b in (lo, hi) if b)
    wanted = f"{name} must be a number" + (f" {bounds}" if bounds else "")
    if isinstance(value, bool):
        raise InputError(f"{wanted}; got {_show(value)}.", field=field)
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InputError(f"{wanted}; got {_show(value)}.", field=field) from None
    bad = not math.isfinite(number)
    if low is not None:
        bad |= number <= low if low_open else number < low
    if high is not None:
        bad |= number >= high if high_open else number > high
    if bad:
        raise InputError(f"{wanted}; got {number:g}.", field=field)
    return _ok(number, field)


def parse_choice(value: Any, name: str, choices: Sequence[str] | Mapping[str, Any], *,
                 default: Any = REQUIRED, field: str | None = None) -> str:
    """One of ``choices`` (a list, or a mapping whose keys are the choices)."""
    if _empty(value):
        return _missing(name, default, field)
    allowed = list(choices)
    text = str(value).strip()
    if text not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {_show(value)}.", field=field)
    return _ok(text, field)


def parse_bool(value: Any, name: str, *, default: bool = False, field: str | None = None) -> bool:
    """true/false, 1/0, yes/no, on/off (any case); empty = ``default``."""
    if _empty(value):
        return _ok(default, field)
    if isinstance(value, bool):
        return _ok(value, field)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return _ok(True, field)
    if text in ("0", "false", "no", "off"):
        return _ok(False, field)
    raise InputError(f"{name} must be true or false; got {_show(value)}.", field=field)


def parse_int_list(value: Any, name: str, low: int, high: int, *, max_items: int = 64,
                   field: str | None = None) -> list[int]:
    """'12, 305 7' -> [12, 305, 7]: whole numbers in [low, high] separated by commas or spaces."""
    if _empty(value):
        return []
    parts = str(value).replace(",", " ").split()
    if len(parts) > max_items:
        raise InputError(f"{name} takes at most {max_items} numbers; got {len(parts)}.", field=field)
    return _ok([parse_int(part, f"Each of {name}", low, high, field=field) for part in parts], field)


def parse_ranges(value: Any, name: str, low: int, high: int, *, field: str | None = None) -> list[int] | None:
    """'0-5,12' -> [0, 1, 2, 3, 4, 5, 12] (each within [low, high]); empty -> None (= all)."""
    if _empty(value):
        return None
    out: list[int] = []
    for part in str(value).replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part[1:]:  # a range a-b (a leading dash alone is a negative number: out of bounds)
            first, last = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
            a = parse_int(first, f"{name} (range start)", low, high, field=field)
            b = parse_int(last, f"{name} (range end)", low, high, field=field)
            if b < a:
                raise InputError(f"{name}: the range {part} runs backwards; write it as {b}-{a}.", field=field)
            out += range(a, b + 1)
        else:
            out.append(parse_int(part, name, low, high, field=field))
    if not out:
        raise InputError(f"{name} lists no layer; write e.g. 0-5,12 (layers from {low} to {high}).", field=field)
    return _ok(sorted(dict.fromkeys(out)), field)


def parse_text(value: Any, name: str, max_chars: int, *, default: Any = REQUIRED, field: str | None = None) -> str:
    """A non-empty string of at most ``max_chars`` characters (and valid UTF-8: no lone surrogates)."""
    if _empty(value):
        return _missing(name, default, field)
    text = str(value)
    if len(text) > max_chars:
        raise InputError(f"{name} has {len(text):,} characters; the limit is {max_chars:,}.", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{name} has an invalid character at position {exc.start} (a lone UTF-16 surrogate); "
                         "remove it and try again.", field=field) from exc
    return _ok(text, field)


def url_int(value: Any, default: Any, low: int | None = None, high: int | None = None) -> Any:
    """An integer from a page link for the page's first view: a link must always open, so an unreadable
    value opens ``default`` and an out-of-range one the nearest bound (the control then shows what it got,
    and the page's own parsing, which names every bound, takes over)."""
    try:
        number = parse_int(value, "link value")
    except InputError:
        return default
    if low is not None:
        number = max(low, number)
    if high is not None:
        number = min(high, number)
    return number
