"""Where the code runs: an IPython shell to display into, and whether it is a notebook kernel."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["in_notebook", "ipython_shell"]


def ipython_shell() -> Any:
    """The running IPython shell (terminal or kernel), or ``None``; never imports IPython."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def in_notebook(shell: Any = None) -> bool:
    """Whether ``shell`` (default: the running one) is a kernel with a frontend that renders HTML."""
    shell = shell if shell is not None else ipython_shell()
    return getattr(shell, "kernel", None) is not None
