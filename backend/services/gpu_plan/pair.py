"""Two models on one card: awake together (co-resident), or taking turns through vLLM's sleep mode (switching).

Switching: while one model serves, the other sleeps. A sleeping vLLM (level 1) has moved its weights to
host RAM and dropped its KV cache, but keeps its CUDA context, its CUDA graphs and the non-torch memory
(cuBLAS workspaces) on the card: each model is planned alone on the card less what the other keeps while
asleep. The service (LLM_MODELS with one swap_group) puts one to sleep before it wakes the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from backend.services.gpu_plan.envfile import EnvWriteError, env_values, plan_header, render
from backend.services.gpu_plan.planner import GIB, HOST_RAM_KEPT_GIB, ModelRequest, Plan, Setup, make_plan

# Waking from level 1 copies the weights back from pinned host RAM: PCIe 4.0 x16 moves about 25 GB/s in
# practice, PCIe 5.0 about twice that. An estimate, to be replaced by benchmarks/switch_time.py's figure.
WAKE_COPY_GBS = 25.0
SWAP_GROUP = "gpu0"

PairMode = Literal["co-resident", "switching", "neither"]


@dataclass
class PairPlan:
    mode: PairMode
    together: Plan  # both awake at once
    alone: list[Plan]  # each awake while the other sleeps
    asleep_gib: list[float]  # what each keeps on the card while asleep
    wake_s: list[float]  # estimated level-1 wake: its weights copied back from host RAM
    host_ram_needed_gib: float  # weights held in host RAM by the sleeping one (the larger), plus the host's own
    notes: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> list[Plan]:
        """The plan each model runs with: the shared one when co-resident, its own when switching."""
        return [self.together, self.together] if self.mode == "co-resident" else self.alone


def plan_pair(requests: list[ModelRequest], setup: Setup) -> PairPlan:
    if len(requests) != 2:
        raise ValueError("a pair is two models")
    together = make_plan(requests, setup)
    asleep = [m.outside_gib + m.non_torch_gib for m in together.models]
    alone = [make_plan([req], replace(setup, reserve_gib=setup.reserve_gib + asleep[1 - i]))
             for i, req in enumerate(requests)]  # fmt: skip
    weights = [(m.weights_gib + m.offload_gib) * setup.tensor_parallel for m in together.models]
    wake_s = [w * GIB / 1e9 / WAKE_COPY_GBS for w in weights]
    mode: PairMode = "co-resident" if together.fits else "switching" if all(p.fits for p in alone) else "neither"
    pair = PairPlan(mode, together, alone, asleep, wake_s, max(weights) + HOST_RAM_KEPT_GIB)
    if mode == "switching":
        pair.notes.append(
            "the two do not fit awake together at these settings; each fits while the other sleeps: "
            "requests for the sleeping one wait for a switch (sleep, then wake: about "
            f"{max(wake_s):.1f} s estimated for the larger wake, plus the first token)"
        )
    if mode == "neither":
        pair.notes.append("not even one at a time: see each model's fixes (`python -m cli.plan MODEL`)")
    if setup.host_ram_gib is not None and setup.host_ram_gib < pair.host_ram_needed_gib:
        pair.notes.append(
            f"sleep level 1 keeps the sleeping model's weights in host RAM ({max(weights):.1f} GiB) and the host "
            f"has {setup.host_ram_gib:g} GiB: use sleep_level 2 (weights reloaded from disk at each wake, slower)"
        )
    return pair


def pair_env_values(pair: PairPlan, env_file_name: str = ".env.vllm") -> dict[str, str]:
    """The settings docker-compose.vllm.yml's `pair` profile reads: VLLM_* for the first model, VLLM_B_* for
    the second, sleep mode, and the backend's LLM_MODELS."""
    if pair.mode == "neither":
        raise EnvWriteError("the two models do not fit on this card even one at a time; nothing written")
    plans = pair.chosen
    first = env_values(plans[0], 0, env_file_name)
    second = env_values(plans[1], 1 if pair.mode == "co-resident" else 0, env_file_name)
    values = {k: v for k, v in first.items() if k != "BACKEND_PORT"}
    values.update({f"VLLM_B_{k[len('VLLM_') :]}": v for k, v in second.items() if k.startswith("VLLM_")})
    names = [values["VLLM_SERVED_MODEL_NAME"], values["VLLM_B_SERVED_MODEL_NAME"]]
    if names[0] == names[1]:  # two variants of one shape: named after their checkpoints
        repos = [values["VLLM_MODEL"], values["VLLM_B_MODEL"]]
        names = [r.rstrip("/").rsplit("/", 1)[-1].lower() for r in repos]
        if names[0] == names[1]:
            names[1] += "-b"
        values["VLLM_SERVED_MODEL_NAME"], values["VLLM_B_SERVED_MODEL_NAME"] = names
    switching = pair.mode == "switching"
    values["VLLM_ENABLE_SLEEP_MODE"] = "true" if switching else "false"
    values["VLLM_PAIR_MODE"] = pair.mode
    models = []
    for name, host, role in ((names[0], "vllm", "default"), (names[1], "vllm-b", "large")):
        entry = {"name": name, "backend": "vllm", "base_url": f"http://{host}:8000/v1", "model": name, "role": role}
        models.append({**entry, "swap_group": SWAP_GROUP} if switching else entry)
    values["LLM_MODELS"] = json.dumps(models, separators=(",", ":"))
    values["LLM_CONTEXT_TOKENS"] = str(min(int(first["LLM_CONTEXT_TOKENS"]), int(second["LLM_CONTEXT_TOKENS"])))
    return values


def write_pair_env(pair: PairPlan, path: Path) -> None:
    """Write (or update in place) `path` with the pair's settings; other lines stay as they are."""
    values = pair_env_values(pair, env_file_name=path.name)
    existing = path.read_text(encoding="utf-8") if path.exists() else None
    header = plan_header(pair.chosen[0], 0) + f"\n# pair profile ({pair.mode}): the second model's lines are VLLM_B_*"
    path.write_text(render(values, existing, header), encoding="utf-8")
