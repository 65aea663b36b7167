"""The floor (issue 15): a bare Starlette + uvicorn app answering a constant prediction to the same v1 POST.

No model, no validation, no logging: what the HTTP stack alone costs on this machine, measured in the same run
as every other server, so that theirs can be read as a share of it. It reads the whole body (any server must) and
answers the shape ours does for one row; uvicorn runs as ``make serve`` should: uvloop, httptools, no access log.

    python tests/bench/floor.py --model_name NAME --http_port P
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSON = "application/json"


def prediction(model_name: str) -> bytes:
    """What ours answers for one row (README: predictions, probabilities, model name and version)."""
    body = {"predictions": [0], "probabilities": [[0.95, 0.05]], "model_name": model_name, "model_version": "1"}
    return json.dumps(body, separators=(",", ":")).encode()


def build_app(model_name: str) -> Starlette:
    answer = prediction(model_name)
    ready = json.dumps({"name": model_name, "ready": True}).encode()

    async def predict(request: Request) -> Response:
        await request.body()
        return Response(answer, media_type=JSON)

    async def model_ready(_request: Request) -> Response:
        return Response(ready, media_type=JSON)

    return Starlette(routes=[
        Route("/v1/models/{model}:predict", predict, methods=["POST"]),
        Route("/v1/models/{model}", model_ready, methods=["GET"]),
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--http_port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(build_app(args.model_name), host="127.0.0.1", port=args.http_port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")  # fmt: skip


if __name__ == "__main__":
    main()
