"""Progress bars that stay readable in terminals, notebooks and rendered books."""
from __future__ import annotations

# text bars everywhere: tqdm.auto needs ipywidgets in a notebook and, without it, prints a
# TqdmWarning into every executed page; widget bars would not render in the static book anyway
from tqdm.std import tqdm


def progress(iterable=None, *, total=None, desc=None, enabled=True, **kwargs):
    """A tqdm bar updating at most every 2 s (so executed notebooks do not fill with updates)."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, mininterval=2.0,
                dynamic_ncols=True, **kwargs)
