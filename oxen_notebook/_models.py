"""The model catalogue: ``GET /models`` and ``GET /models/{id}``, and :class:`ModelCatalog`, the
one place a session keeps what it learned about a model (details, request schema, prices)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ._client import DEFAULT_BASE_URL, Client
from ._errors import OxenError
from ._pricing import Pricing, pricing_from_info

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ModelCatalog", "list_models", "model_info"]
_log = logging.getLogger("oxen_notebook")

_COLUMNS = [
    "id",
    "name",
    "developer",
    "input",
    "output",
    "input_cost_per_token",
    "output_cost_per_token",
    "description",
]


def _default_client() -> Client:
    return Client(os.environ.get("OXEN_BASE_URL") or DEFAULT_BASE_URL)


def _row(model: dict[str, Any]) -> dict[str, Any]:
    capabilities = model.get("capabilities") or {}
    pricing = model.get("pricing") or {}
    developer = model.get("developer")
    return {
        "id": model.get("id"),
        "name": model.get("display_name") or model.get("name") or model.get("id"),
        "developer": (developer or {}).get("name")
        if isinstance(developer, dict)
        else developer or model.get("developer_name"),
        "input": ",".join(capabilities.get("input") or []) or None,
        "output": ",".join(capabilities.get("output") or []) or None,
        "input_cost_per_token": pricing.get("input_cost_per_token"),
        "output_cost_per_token": pricing.get("output_cost_per_token"),
        "description": model.get("description"),
    }


def list_models(
    *, developer: str | None = None, action: str | None = None, client: Client | None = None
) -> pd.DataFrame:
    """The models the API offers: id, name, developer, input/output capabilities, prices per token."""
    import pandas as pd

    client = client or _default_client()
    payload = client.get_json("/models", developer_name=developer, action=action)
    models = payload.get("data", []) if isinstance(payload, dict) else payload
    rows = [_row(m) for m in models or []]
    if developer is None and action is None:
        from ._local import local_models  # the embedded model's entry: a cheap file lookup

        listed = {row["id"] for row in rows}
        # The embedded model, when its extra is installed.
        rows += [_row(m) for m in local_models() if m["id"] not in listed]
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    for name in ("input_cost_per_token", "output_cost_per_token"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Float64")
    return frame


def model_info(model: str, *, client: Client | None = None) -> dict[str, Any]:
    """A model's details as the API gives them; the request schema (either key name, may be
    ``None``) is also under ``request_schema``."""
    client = client or _default_client()
    response = client.send("GET", f"/models/{quote(model, safe='')}", model=model)
    info = response.json()
    if isinstance(info, dict) and isinstance(info.get("data"), dict):
        info = info["data"]
    info = dict(info) if isinstance(info, dict) else {"id": model}
    info["request_schema"] = info.get("request_schema") or info.get("json_request_schema")
    return info


class ModelCatalog:
    """``GET /models/{id}`` at most once per model for a session; thread-safe.

    ``client_for(model)`` gives the client that serves the model (hosted or local). A model whose
    details cannot be fetched is remembered as unknown: no schema check, no prices.
    """

    def __init__(self, client_for: Callable[[str], Client]) -> None:
        self._client_for = client_for
        self._infos: dict[str, dict[str, Any] | None] = {}
        self._no_json_schema: set[str] = set()
        self._lock = threading.Lock()

    def info(self, model: str) -> dict[str, Any]:
        """The model's details (fetched on first use); raises the request's :class:`OxenError`."""
        with self._lock:
            known = self._infos.get(model)
        if known is not None:
            return known
        info = model_info(model, client=self._client_for(model))
        with self._lock:
            self._infos[model] = info
        return info

    def known(self, model: str) -> dict[str, Any] | None:
        """The model's details, or ``None`` when they cannot be had (asked once per model)."""
        with self._lock:
            if model in self._infos:
                return self._infos[model]
        try:
            return self.info(model)
        except OxenError as exc:
            _log.info("no details for model %r: %s", model, exc)
            with self._lock:
                self._infos.setdefault(model, None)
            return None

    def request_schema(self, model: str) -> dict[str, Any] | None:
        """The model's published JSON request schema, or ``None``."""
        return (self.known(model) or {}).get("request_schema")

    def pricing(self, model: str) -> Pricing | None:
        """The model's prices, or ``None`` when it publishes none."""
        return pricing_from_info(self.known(model))

    def takes_json_schema(self, model: str, *, published: bool = True) -> bool:
        """Whether to ask ``model`` for ``response_format`` ``json_schema`` (else ``json_object``):
        not when it refused it in this session, or (``published``: its details are fetched) when
        its request schema leaves it out."""
        from ._schema import json_schema_support

        with self._lock:
            if model in self._no_json_schema:
                return False
        return not published or json_schema_support(self.request_schema(model)) is not False

    def refuses_json_schema(self, model: str) -> None:
        """Remember, for this session, that ``model`` answered 400 to a ``json_schema`` request."""
        with self._lock:
            self._no_json_schema.add(model)
