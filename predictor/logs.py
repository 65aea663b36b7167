"""Log output: readable lines, or one JSON object per line for cluster log pipelines; and the warnings that
third-party packages print at every start, silenced by name (each one known and harmless to a user).
"""

from __future__ import annotations

import contextvars
import logging
import warnings

import orjson

#: The id of the request being served (``x-request-id`` or the v2 body's ``id``), for log lines about it.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# (category, message regex, module regex): what a clean start would otherwise print.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # KServe 0.21 still uses FastAPI's ORJSONResponse; our routes answer with plain Responses. FastAPI's
    # FastAPIDeprecationWarning is a UserWarning, not a DeprecationWarning: filter on Warning.
    (Warning, ".*ORJSONResponse is deprecated.*", ""),
    # MLflow's SQLAlchemy store uses the legacy `noload` loader strategy.
    (Warning, ".*noload.*", ""),
    # MLflow warns about pydantic/pkg_resources details on import.
    (UserWarning, ".*pkg_resources is deprecated.*", ""),
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(level: str, log_format: str, access_log: bool) -> None:
    """Install our one handler on the root logger (KServe's and uvicorn's loggers propagate to it).

    ``access_log``: uvicorn writes a line per request whenever its access logger has a handler."""
    silence_known_warnings()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # KServe configures its own handlers when its logger has none: give it ours instead.
    for name in ("kserve", "kserve.trace"):
        named = logging.getLogger(name)
        named.handlers[:] = [handler]
        named.propagate = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers[:] = []
        named.propagate = name != "uvicorn.access" or access_log
    # httpx logs every request it sends at INFO: a line per payload event (two per call) and per registry call.
    # Its failures reach our own log lines; at INFO it would drown them.
    if root.level > logging.DEBUG:
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def silence_known_warnings() -> None:
    """Idempotent; call again after importing Feast, which puts its own filters in front of ours."""
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
