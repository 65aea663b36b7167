"""Seldon MLServer in a virtual environment of its own (its pins clash with ours), created on first use."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

MLSERVER_VERSION = "1.7.1"
# Built with the same versions as the model was trained/saved with, so the pickle loads the same forest.
_SHARED_WITH_OURS = ("scikit-learn", "cloudpickle", "numpy", "pandas", "mlflow")
# uvloop 0.22+ raises in asyncio.get_event_loop() without a running loop, which kills MLServer 1.7's
# inference-pool workers at start ("There is no current event loop in thread 'MainThread'").
_EXTRA = ("uvloop<0.22",)


def requirements() -> list[str]:
    shared = [f"{name}=={version(name)}" for name in _SHARED_WITH_OURS]
    return [f"mlserver=={MLSERVER_VERSION}", f"mlserver-mlflow=={MLSERVER_VERSION}", *shared, *_EXTRA]


def ensure_mlserver(venv: Path, log: Path, timeout_s: float = 420) -> tuple[Path | None, str]:
    """The ``mlserver`` executable, installing it on first use; (None, reason) when that is not possible."""
    executable = venv / "bin" / "mlserver"
    marker = venv / ".bench-requirements"
    wanted = "\n".join(requirements())
    if executable.exists() and marker.exists() and marker.read_text() == wanted:
        return executable, "installed"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"==> installing MLServer {MLSERVER_VERSION} into {venv} (first run only; log: {log})", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", *requirements()],
    ]
    with log.open("w") as out:
        for step in steps:
            try:
                done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired:
                return None, f"not available (install took over {timeout_s:g} s)"
            if done.returncode != 0:
                return None, f"not available (install failed, see {log})"
    marker.write_text(wanted)
    return executable, "installed"
