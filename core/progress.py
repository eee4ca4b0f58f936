"""Progress bars: live on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str, enabled: bool = True,
        **kw: Any) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=interactive,
                mininterval=0.2 if interactive else 10.0, **kw)
