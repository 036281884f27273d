"""One path policy for every server path a user types: model folders, SAE and lens folders, saved
datasets, corpus and sample files, the API's ``sae=``.

``user_path`` resolves the path (``~`` expanded, symlinks followed) and requires it to lie inside one of
``ALLOWED_ROOTS`` (config.py). With no roots configured, a local dashboard accepts any path and a team
dashboard (bound beyond loopback, or behind a password) accepts none. The refusal names the roots and
never whether the refused path exists, so a team-mode user cannot probe the server's file system.
"""

from __future__ import annotations

from pathlib import Path

from analysis.errors import InputError, PathNotAllowed
from analysis.settings import Settings


def looks_like_path(value: str) -> bool:
    """True for input meant as a path (absolute, ``~``, ``./``, ``../``), not a hub id like ``org/name``."""
    text = (value or "").strip()
    return text.startswith(("/", "~", "./", "../")) or text in (".", "..")


def user_path(settings: Settings, raw: str, what: str, kind: str = "dir", must_exist: bool = True,
              field: str | None = None) -> Path:
    """The resolved path of ``raw`` under the path policy; ``kind`` is "dir", "file" or "any"."""
    text = (raw or "").strip()
    if not text:
        raise InputError(f"Give the {what}'s path.", field=field)
    path = Path(text).expanduser().resolve()
    roots = [Path(r).expanduser().resolve() for r in settings.roots]
    if roots:
        if not any(path == root or path.is_relative_to(root) for root in roots):
            shown = ", ".join(str(r) for r in roots)
            raise PathNotAllowed(f"The {what} must be inside {shown} (ALLOWED_ROOTS in config.py).", field=field)
    elif settings.team_mode:
        raise PathNotAllowed(f"Server paths are off on this team dashboard, so no {what} can be read from one; "
                             "its admin can allow folders with ALLOWED_ROOTS in config.py.", field=field)
    if must_exist:
        if kind == "dir" and not path.is_dir():
            raise InputError(f"No such folder: {path} (the {what}).", field=field)
        if kind == "file" and not path.is_file():
            raise InputError(f"No such file: {path} (the {what}).", field=field)
        if kind == "any" and not path.exists():
            raise InputError(f"No such file or folder: {path} (the {what}).", field=field)
    return path
