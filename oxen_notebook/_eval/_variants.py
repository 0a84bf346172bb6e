"""Variants: what one arm of an evaluation sends. A :class:`Variant` is one frozen value (template,
model, system prompt, schema, parameters), checked once where it is made; ``expand`` crosses the
variants that name no model with ``models=``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .._ask import check_one_format
from .._errors import ParameterError
from .._params import validate_params

__all__ = ["Arm", "Variant", "expand"]


@dataclass(frozen=True, init=False)
class Variant:
    """One prompt to evaluate: ``Variant(template, model=, system=, schema=, **params)``.

    ``template`` is filled from each data row as in :meth:`Session.map` (``{review}``); ``model``
    (default: each of ``evaluate(models=)``, else the Session's), ``system`` (a system prompt for
    this variant's requests; default: the Session's), ``schema`` (as in :meth:`Session.stream`)
    and request parameters (``temperature=0``, ``max_tokens=200``) are this variant's own."""

    template: str
    model: str | None
    system: str | None
    schema: Any
    params: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        template: str,
        *,
        model: str | None = None,
        system: str | None = None,
        schema: Any = None,
        **params: Any,
    ) -> None:
        if not isinstance(template, str) or not template.strip():
            raise ParameterError("a Variant's template is empty: give a prompt such as 'Classify: {text}'.")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ParameterError(f"Variant(model={model!r}) is invalid: expected a model id.")
        if system is not None and not isinstance(system, str):
            raise ParameterError(f"Variant(system={system!r}) is invalid: expected text.")
        check_one_format(params, schema_given=schema is not None)
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "system", system or None)
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "params", MappingProxyType(validate_params(dict(params))))

    def settings(self) -> dict[str, Any]:
        """What this variant records: its template, model, system prompt and parameters."""
        return {"template": self.template, "model": self.model, "system": self.system, **self.params}


@dataclass(frozen=True)
class Arm:
    """A variant with its model decided: what the evaluation runs and reports as ``name``."""

    name: str
    variant: Variant
    model: str | None  # None: the Session's model


def expand(variants: Any, models: list[str] | None) -> list[Arm]:
    """The arms to run: each variant as given, those naming no model once per model of ``models``
    (named ``name@model`` when there are several models)."""
    if isinstance(variants, (str, Variant)):
        variants = {"prompt": variants}
    if not isinstance(variants, Mapping) or not variants:
        raise ParameterError(
            "variants must be a dict of name -> template or Variant, such as "
            "{'terse': 'Classify: {text}', 'steps': Variant('Think, then answer: {text}')}."
        )
    if models is not None and (
        isinstance(models, str) or not all(isinstance(m, str) and m.strip() for m in models) or not models
    ):
        raise ParameterError(f"models={models!r} is invalid: expected a list of model ids.")
    arms: list[Arm] = []
    for name, given in variants.items():
        if not isinstance(name, str) or not name.strip():
            raise ParameterError(f"variant name {name!r} is invalid: expected a non-empty string.")
        variant = Variant(given) if isinstance(given, str) else given
        if not isinstance(variant, Variant):
            raise ParameterError(
                f"variant {name!r} is {type(given).__name__}: expected a template string or a Variant."
            )
        if variant.model is not None or not models:
            arms.append(Arm(name, variant, variant.model))
        else:
            for model in dict.fromkeys(models):
                arms.append(Arm(name if len(models) == 1 else f"{name}@{model}", variant, model))
    names = [arm.name for arm in arms]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ParameterError(f"variant name {repeated[0]!r} is used twice: give each variant its own name.")
    return arms
