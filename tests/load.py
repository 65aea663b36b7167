"""A small bounded load generator for reliability tests: N concurrent clients, stopped by time or event."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.servers import MODEL_NAME, SEED_ROWS


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # transport errors after the request was sent
    refused: int = 0  # connection refused: never accepted by the server

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + len(self.errors)


async def run_load(
    base_url: str,
    stop: asyncio.Event,
    concurrency: int = 16,
    max_seconds: float = 30,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    result = LoadResult()
    url = f"{base_url}/v1/models/{MODEL_NAME}:predict"
    deadline = time.monotonic() + max_seconds

    async def client() -> None:
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = await http.post(url, json={"instances": SEED_ROWS})
                except httpx.ConnectError:
                    result.refused += 1
                    await asyncio.sleep(0.01)
                    continue
                except httpx.HTTPError as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                result.statuses[response.status_code] += 1
                if response.status_code == 200:
                    result.versions[response.json()["model_version"]] += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return result
