"""Requests that arrive while a prediction runs are scored together in the next one.

A lone request is scored at once (no waiting window); under load, the rows of every request that came
in meanwhile go into one ``predict`` call, so pandas' and the pipeline's fixed cost per call is paid
once per batch instead of once per request. Scoring runs in a thread, so the event loop keeps reading
requests while the model works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np


class MicroBatcher:
    def __init__(self, predict: Callable[[list[dict[str, Any]]], np.ndarray], executor: Executor, max_rows: int = 512):
        self._predict = predict
        self._executor = executor
        self._max_rows = max_rows
        self._pending: list[tuple[Sequence[dict[str, Any]], asyncio.Future]] = []
        self._draining = False

    async def predict(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """The model's output for ``rows`` (one entry per row, in order)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((rows, future))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[Sequence[dict[str, Any]], asyncio.Future]]:
        taken, n_rows = [], 0
        while self._pending and (not taken or n_rows + len(self._pending[0][0]) <= self._max_rows):
            item = self._pending.pop(0)
            taken.append(item)
            n_rows += len(item[0])
        return taken

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                taken = self._take()
                rows = [row for request_rows, _ in taken for row in request_rows]
                try:
                    output = await loop.run_in_executor(self._executor, self._predict, rows)
                except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch, each answers its own error
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for request_rows, future in taken:
                    end = start + len(request_rows)
                    if not future.done():  # a caller that went away (client disconnect) cancelled its future
                        future.set_result(output[start:end])
                    start = end
        finally:
            self._draining = False
