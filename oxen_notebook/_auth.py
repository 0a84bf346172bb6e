"""Where the API key comes from, and a wrapper that keeps it out of reprs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["Secret", "config_dir", "find_api_key", "host_of"]


class Secret:
    """Holds an API key; ``repr``/``str`` never show it. ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple:
        raise TypeError("an API key is not picklable")


def config_dir() -> Path:
    """The Oxen CLI's config folder: ``$OXEN_CONFIG_DIR`` or ``~/.config/oxen``."""
    env = os.environ.get("OXEN_CONFIG_DIR")
    return Path(env).expanduser() if env else Path.home() / ".config" / "oxen"


def _load_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with path.open("rb") as f:
        return tomllib.load(f)


def _key_from_config(host: str) -> str | None:
    path = config_dir() / "auth_config.toml"
    if not path.is_file():
        return None
    try:
        config = _load_toml(path)
    except (OSError, ValueError):
        return None
    for entry in config.get("host_configs") or []:
        if isinstance(entry, dict) and entry.get("host") == host and entry.get("auth_token"):
            return str(entry["auth_token"])
    return None


def host_of(base_url: str) -> str:
    """``https://hub.oxen.ai/api/ai`` -> ``hub.oxen.ai`` (with the port, if any)."""
    return urlsplit(base_url).netloc or base_url


def find_api_key(base_url: str, explicit: str | None = None) -> Secret | None:
    """The key from the argument, else ``OXEN_API_KEY``, else the Oxen CLI config for the host."""
    value = explicit or os.environ.get("OXEN_API_KEY") or _key_from_config(host_of(base_url))
    return Secret(value.strip()) if value and value.strip() else None
