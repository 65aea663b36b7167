"""MLflow imported by one thread at a time.

Two threads importing MLflow at once (the model loader and the challenger's follower, or an admin reload during
a cached start) can deadlock in Python's per-module import locks; Python breaks the deadlock by handing one
thread a half-initialised module, and MLflow then fails every later use with "partially initialized module
'mlflow' has no attribute ..." for the life of the process. Every import of MLflow on a serving path goes
through ``import_modules``, which holds one lock for the whole import.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

_LOCK = threading.Lock()


def import_modules(*names: str) -> list[ModuleType]:
    """Import ``names`` (already imported: a dictionary lookup) under the one lock."""
    with _LOCK:
        return [importlib.import_module(name) for name in names]
