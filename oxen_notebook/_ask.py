"""What shapes one request, as one value: :class:`Ask`, made and checked once where a request is born.

``Session.stream``/``astream``/``preview``, a ``map`` row, a panel send, a magic cell and an
evaluation variant each make one with :meth:`Ask.make`: every check of what a caller gives (an
empty prompt, ``schema=`` with ``response_format=``, ``approve=`` without Python tools,
``max_repairs``, ``system=`` in a conversation, ``images=``/``files=`` that are not lists) and the
one :func:`~oxen_notebook._params.validate_params` of its parameters happen there, and nowhere
after: the Session, the turn and the exchange read it. ``output`` is the schema the reply must fit
(an :class:`~oxen_notebook._schema.OutputSchema`); the model's published request schema is another
thing, ``request_schema``, checked by the Session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._attachments import Attachment, attach, attach_image
from ._errors import ParameterError
from ._params import validate_params

if TYPE_CHECKING:
    from ._schema import OutputSchema
    from ._toolbox import Toolbox

__all__ = [
    "Ask",
    "attachments",
    "check_max_repairs",
    "check_one_format",
    "check_tools",
    "output_schema",
    "request_params",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_schemas: dict[Any, OutputSchema] = {}  # specs seen lately: building one costs a pydantic schema


def output_schema(spec: Any) -> OutputSchema:
    """``spec`` (a type, a JSON Schema dict, or one made already) as an :class:`OutputSchema`,
    built once per spec among the last 64."""
    from ._schema import OutputSchema  # pydantic-backed: loaded when a schema is first asked for

    if isinstance(spec, OutputSchema):
        return spec
    key: Any = spec
    try:
        hash(spec)
    except TypeError:  # a JSON Schema dict
        key = json.dumps(spec, sort_keys=True, default=str)
    schema = _schemas.get(key)
    if schema is None:
        if len(_schemas) >= 64:
            _schemas.clear()
        schema = _schemas[key] = OutputSchema.from_spec(spec)
    return schema


def attachments(images: Any, files: Any) -> tuple[Attachment, ...]:
    """``images=`` and ``files=`` as attachments (ones made already are taken as they are)."""
    for name, given in (("images", images), ("files", files)):
        if given is not None and (isinstance(given, (str, bytes)) or not isinstance(given, (list, tuple))):
            raise ParameterError(
                f"{name}= takes a list, such as {name}=[{'fig' if name == 'images' else 'path'}]."
            )
    made = [a if isinstance(a, Attachment) else attach_image(a, i) for i, a in enumerate(images or [])]
    return (*made, *(a if isinstance(a, Attachment) else attach(a, i) for i, a in enumerate(files or [])))


def check_max_repairs(max_repairs: Any) -> int:
    """``max_repairs`` when it is a whole number of 0 or more; else the one error that says so."""
    if not isinstance(max_repairs, int) or isinstance(max_repairs, bool) or max_repairs < 0:
        raise ParameterError(f"max_repairs={max_repairs!r} is invalid: expected 0 or more.")
    return max_repairs


def request_params(
    params: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None, output: OutputSchema | None
) -> dict[str, Any]:
    """``params`` over ``defaults``, validated together (so ``None`` drops a default), with the
    ``response_format`` of ``output`` (a schema) if there is one."""
    clean = validate_params({**(defaults or {}), **(params or {})})
    if output is not None:
        check_one_format(clean, schema_given=True)
        clean["response_format"] = output.response_format()
    return clean


def check_one_format(params: Mapping[str, Any], *, schema_given: bool) -> None:
    """A schema makes the response format: refuse one given beside it."""
    if schema_given and params.get("response_format"):
        raise ParameterError("give schema= or response_format=, not both.")


def check_tools(tools: Any, approve: Any) -> Toolbox | None:
    """``tools=`` as a :class:`Toolbox` (``None`` for none), refusing ``approve=`` without a
    Python function to approve."""
    toolbox = None
    if tools:
        from ._toolbox import Toolbox  # loaded by the first request with tools

        toolbox = Toolbox(tools)
    if approve is not None and (toolbox is None or not toolbox.runnable):
        raise ParameterError("approve= decides tool calls: give tools=[python functions] with it.")
    return toolbox


@dataclass(frozen=True)
class Ask:
    """Everything that shapes one request but the conversation it joins. Frozen and checked:
    make it with :meth:`make`.

    ``params`` are the request's parameters as sent (the Session's defaults under the caller's,
    validated; ``response_format`` from ``output`` and ``tools`` from the toolbox among them);
    ``extra_body`` / ``extra_headers`` are kept apart, as they go elsewhere on the wire."""

    prompt: str
    attachments: tuple[Attachment, ...] = ()
    model: str | None = None  # None: the Session's
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    extra_body: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    extra_headers: Mapping[str, str] | None = None
    output: OutputSchema | None = None
    tools: Toolbox | None = None
    approve: Callable[[Any], Any] | None = None
    max_repairs: int = 1
    max_tool_rounds: int | None = None
    history: bool = True
    source: str | None = None  # None: the Session's
    system: str | None = None  # a one-shot request's own system prompt (None: the Session's)

    @classmethod
    def make(
        cls,
        prompt: str,
        *,
        params: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        images: Any = None,
        files: Any = None,
        model: str | None = None,
        schema: Any = None,
        tools: Any = None,
        approve: Callable[[Any], Any] | None = None,
        max_repairs: int = 1,
        max_tool_rounds: int | None = None,
        history: bool = True,
        source: str | None = None,
        system: str | None = None,
    ) -> Ask:
        """Check what a caller gave, once: ``params`` over the Session's ``defaults`` (validated
        together, so ``None`` drops a default), ``schema=`` made an :class:`OutputSchema`,
        ``tools=`` a :class:`Toolbox`, ``images=``/``files=`` attachments."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ParameterError("prompt is empty: give the text to send.")
        if system is not None and (history or not isinstance(system, str)):
            raise ParameterError(
                "system= takes text, and only with history=False: set Session.system for a conversation."
            )
        check_max_repairs(max_repairs)
        output = output_schema(schema) if schema is not None else None
        clean = request_params(params, defaults, output)
        extra_body = clean.pop("extra_body", None)
        extra_headers = clean.pop("extra_headers", None)
        toolbox = check_tools(tools, approve)
        if toolbox is not None:
            clean["tools"] = toolbox.specs()
        return cls(
            prompt=prompt,
            attachments=attachments(images, files),
            model=model,
            params=MappingProxyType(clean),
            extra_body=MappingProxyType(dict(extra_body)) if extra_body else _EMPTY,
            extra_headers=MappingProxyType(dict(extra_headers)) if extra_headers else None,
            output=output,
            tools=toolbox,
            approve=approve,
            max_repairs=max_repairs,
            max_tool_rounds=max_tool_rounds,
            history=history,
            source=source,
            system=system,
        )

    @property
    def plan_needed(self) -> bool:
        """Whether a reply may be followed by more requests (a schema to validate, tools to run)."""
        return self.output is not None or (self.tools is not None and self.tools.runnable)
