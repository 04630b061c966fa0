"""Progress bars that suit where the code runs.

* a terminal: text bars (tqdm); output redirected to a file or pipe: no bars (carriage-return bars
  would fill the log), the callers' plain line per epoch only;
* live Jupyter (JupyterLab, Notebook, VS Code): widget bars;
* a notebook executed in batch (papermill, nbmake, ``jupyter nbconvert --execute``): no bars. Nobody
  watches them there, and their last state is saved with the notebook: frozen bars at ``0%`` and
  widget state in the file. The callers print one plain line per epoch instead.

A batch run is told apart from a live one by the kernel's ``allow_stdin`` flag: Jupyter front ends
send code with it set (``input()`` works), the ``nbclient`` executor behind papermill and nbmake
sends it unset.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm as text_tqdm

__all__ = ["batch_kernel", "in_kernel", "tqdm"]


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter (IPython) kernel."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and getattr(shell, "kernel", None) is not None


def batch_kernel() -> bool:
    """Whether this is a kernel executing a notebook in batch (no one can type into it)."""
    if not in_kernel():
        return False
    kernel = sys.modules["IPython"].get_ipython().kernel
    return not getattr(kernel, "_allow_stdin", True)


def _to_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def tqdm(*args: Any, **kwargs: Any) -> text_tqdm:
    """A tqdm bar: a widget in live Jupyter, text in a terminal, disabled in a batch kernel and when
    the output is redirected to a file or pipe (a nohup'd or scheduled run's log gets the plain
    lines only)."""
    if not in_kernel() and not _to_terminal(kwargs.get("file") or sys.stderr):
        kwargs["disable"] = True
    if batch_kernel():
        kwargs["disable"] = True
        return text_tqdm(*args, **kwargs)
    if in_kernel():
        try:
            from tqdm.notebook import tqdm as widget_tqdm  # local: ipywidgets, in a live kernel

            return widget_tqdm(*args, **kwargs)
        except ImportError:  # no ipywidgets: text bars
            pass
    return text_tqdm(*args, **kwargs)


tqdm.write = text_tqdm.write  # type: ignore[attr-defined]
