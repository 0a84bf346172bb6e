"""What differs between ipywidgets 7 (Colab, classic Notebook 6) and 8, as the panel uses them.

Each difference is found by looking at the classes, never at a version string:

- an ``HTML`` widget's style is an ``HTMLStyle`` in 8 and a ``DescriptionStyle`` in 7 (the class
  its ``style`` trait holds);
- hover text is ``tooltip`` on every widget in 8, but only on ``Button`` in 7, where the other
  widgets call it ``description_tooltip`` (8 deprecates that name);
- a widget displays itself through ``_repr_mimebundle_`` in 8 and ``_ipython_display_`` in 7.

Everything else the panel uses (``Combobox``, ``continuous_update``, the ``submit`` custom
message, ``Layout(border=...)``, Font Awesome 4 icon names, ``add_class``) is the same in both.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

__all__ = ["HTML_STYLE", "WidgetDisplay", "tooltip"]

#: The style class an ``HTMLMath`` widget takes (one instance can be shared by many widgets):
#: ``HTMLMathStyle`` in 8, ``DescriptionStyle`` in 7. The transcript's messages are ``HTMLMath``
#: so the frontend's MathJax typesets the math ``_math`` vetted (and nothing else: see there).
HTML_STYLE: type[widgets.Widget] = widgets.HTMLMath.class_traits()["style"].klass


def tooltip(cls: type[widgets.Widget], text: str) -> dict[str, str]:
    """The keyword argument that gives a ``cls`` widget the hover text ``text``."""
    return {"tooltip" if cls.class_traits().get("tooltip") is not None else "description_tooltip": text}


class WidgetDisplay:
    """Displays as its :attr:`widget`, through the hook this ipywidgets displays widgets with."""

    widget: widgets.Widget

    if hasattr(widgets.Widget, "_repr_mimebundle_"):

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            return self.widget._repr_mimebundle_(**kwargs)

    else:

        def _ipython_display_(self, **kwargs: Any) -> None:
            self.widget._ipython_display_(**kwargs)
