"""Where the local model cache keeps the entry of a model URI (a module that imports nothing heavy: a start asks
it before KServe is imported, see ``predictor.__main__``)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def entry_path(directory: Path, tracking_uri: str, model_uri: str) -> Path:
    key = hashlib.sha256(f"{tracking_uri}\n{model_uri}".encode()).hexdigest()[:16]
    return directory / f"{key}.pickle"
