"""Load generators: a closed loop at fixed concurrency, and an open loop with Poisson arrivals.

Both stop at a request count or a time limit, whichever comes first, and return every sample with
the prompt it answered, plus the wall time from the first send to the last completion.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from cli.benchkit.clients import Client, Prompt, Sample

OnDone = Callable[[Sample], None]


@dataclass
class Run:
    samples: list[tuple[Prompt, Sample]]
    seconds: float


async def closed_loop(
    client: Client, prompts: list[Prompt], concurrency: int, requests: int, max_seconds: float, on_done: OnDone
) -> Run:
    """`concurrency` workers, each sending its next request as soon as the previous one finished."""
    results: list[tuple[Prompt, Sample]] = []
    next_index = 0
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests and time.perf_counter() < deadline:
            prompt = prompts[next_index % len(prompts)]
            next_index += 1
            sample = await client.run(prompt)
            results.append((prompt, sample))
            on_done(sample)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(results, time.perf_counter() - start)


async def open_loop(
    client: Client, prompts: list[Prompt], rate: float, requests: int, max_seconds: float, on_done: OnDone,
    seed: int = 0,
) -> Run:  # fmt: skip
    """Requests sent at exponentially distributed intervals (a Poisson process of `rate` per second),
    whether or not earlier ones have finished: the load a crowd of independent users makes."""
    rng = random.Random(seed)
    results: list[tuple[Prompt, Sample]] = []
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()

    async def one(prompt: Prompt) -> None:
        sample = await client.run(prompt)
        results.append((prompt, sample))
        on_done(sample)

    for i in range(requests):
        if time.perf_counter() - start >= max_seconds:
            break
        tasks.append(asyncio.create_task(one(prompts[i % len(prompts)])))
        await asyncio.sleep(rng.expovariate(rate))
    await asyncio.gather(*tasks)
    return Run(results, time.perf_counter() - start)
