"""Will a model fit your GPU under vLLM, and with which settings? Computed from the model's shape.

    python -m cli.plan qwen3-30b-a3b@fp8 --max-model-len 32768
    python -m cli.plan qwen3-30b-a3b@awq qwen3-30b-a3b@awq           # two models on one card, both awake
    python -m cli.plan qwen3-30b-a3b@fp8 qwen3-30b-a3b@fp8 --pair    # ... or taking turns (vLLM sleep mode)
    python -m cli.plan qwen3-235b-a22b@awq --host-ram-gib 192          # offloading considered
    python -m cli.plan llama-3.1-70b --gpu h100-80gb --tensor-parallel-size 2
    python -m cli.plan ./my-model/config.json --format gptq
    python -m cli.plan qwen3-30b-a3b@fp8 --write-env .env.vllm       # set the stack's VLLM_* lines
    python -m cli.plan --list                                         # the catalogue
    python -m cli.plan --users 50,500 --bench bench-out/bench/bench.json --target vllm   # replicas for N users
    python -m cli.plan qwen3-30b-a3b@fp8 --max-model-len 32768 --users 50,500          # ... estimated

A model is a catalogue name or a config.json (or its folder), optionally with @FORMAT. Exit status:
0 it fits, 3 it does not (the fixes are listed), 2 bad input. docs/gpu-planning.md explains the maths;
docs/deployment.md ("Capacity") the --users calculator.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backend.services.gpu_plan.capacity import (
    CapacityInputs,
    capacity_to_dict,
    plan_capacity,
    points_from_bench,
    points_from_planner,
)
from backend.services.gpu_plan.catalogue import CATALOGUE
from backend.services.gpu_plan.envfile import EnvWriteError, write_env
from backend.services.gpu_plan.formats import FORMATS, KV_DTYPES
from backend.services.gpu_plan.hardware import DEFAULT_GPU, GPUS
from backend.services.gpu_plan.pair import PairPlan, write_pair_env
from backend.services.gpu_plan.planner import Plan
from backend.services.gpu_plan.service import (
    PlanInputError,
    PlanInputs,
    build_pair,
    build_plan,
    catalogue_to_list,
    pair_to_dict,
    plan_to_dict,
)
from cli import ui

EXIT_FITS, EXIT_USAGE, EXIT_DOES_NOT_FIT = 0, 2, 3


def parse_args(argv: list[str] | None, prog: str = "python -m cli.plan") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("models", nargs="*", metavar="MODEL[@FORMAT]", help="catalogue name or config.json path")
    p.add_argument("--list", action="store_true", help="list the catalogue, GPUs and formats, then exit")
    p.add_argument("--format", choices=sorted(FORMATS), help="weight format (default: the checkpoint's own)")
    p.add_argument("--max-model-len", type=int, help="tokens per sequence (default: the model's maximum)")
    p.add_argument("--seqs", type=int, default=1, help="sequences that must fit at full length at once (1)")
    p.add_argument("--kv-cache-dtype", default="auto", choices=["auto", *KV_DTYPES], help="(auto = 16-bit)")
    p.add_argument("--gpu", default=DEFAULT_GPU, choices=[*GPUS, "custom"], help=f"(default {DEFAULT_GPU})")
    p.add_argument("--gpu-memory-gib", type=float, help="override (or, with --gpu custom, give) the card's memory")
    p.add_argument("--gpu-bandwidth-gbs", type=float, help="override (or give) its memory bandwidth, GB/s")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs each model spans (1)")
    p.add_argument("--host-ram-gib", type=float, help="host RAM; enables CPU-offload suggestions")
    p.add_argument("--reserve-gib", type=float,
                   help="GPU memory kept for others (default 2 per model: its embedder on the GPU)")  # fmt: skip
    p.add_argument("--cpu-offload-gb", type=float, default=0, help="vLLM --cpu-offload-gb, per GPU (0)")
    p.add_argument("--max-num-batched-tokens", type=int, help="(default: vLLM's, 8192 or 2048 by card)")
    p.add_argument("--max-num-seqs", type=int, help="scheduler cap vLLM profiles for (default: vLLM's)")
    p.add_argument("--typical-tokens", type=int, default=4096, help="tokens of a typical RAG request (4096)")
    p.add_argument("--gpu-memory-utilization", type=float, help="check this value instead of choosing one")
    p.add_argument("--repo", action="append", default=[], help="checkpoint to serve, one per model")
    p.add_argument("--pair", action="store_true",
                   help="two models served by one backend (compose profile pair): awake together if they fit, "
                   "else taking turns in vLLM's sleep mode; --write-env then writes both into FILE")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--write-env", type=Path, metavar="FILE",
                   help="write/update FILE's VLLM_* settings (a second model gets FILE.<model>-2)")  # fmt: skip
    cap = p.add_argument_group("capacity: how many LLM and API replicas N concurrent users need (--users)")
    cap.add_argument("--users", help="concurrent users, comma-separated: 50,500")
    cap.add_argument("--bench", type=Path, help="a cli.bench bench.json measured on one replica (else: estimated "
                     "from the model's decode ceiling)")  # fmt: skip
    cap.add_argument("--target", help="the bench file's target to plan with (when it has several)")
    cap.add_argument("--think-s", type=float, default=30.0, help="a user's pause between answer and question (30)")
    cap.add_argument("--latency-target-s", type=float, default=15.0, help="p95 of a whole answer to plan for (15)")
    cap.add_argument("--spare", type=int, default=1, help="LLM replicas beyond the need, for a failure (1)")
    cap.add_argument("--output-tokens", type=int, default=300, help="estimate: tokens of an answer (300)")
    cap.add_argument("--efficiency", type=float, default=0.5, help="estimate: share of the decode ceiling (0.5)")
    cap.add_argument("--api-cpu-ms", type=float, default=40.0, help="CPU ms one question costs an API replica (40)")
    cap.add_argument("--api-cores", type=float, default=2.0, help="cores of each API replica (2)")
    return p.parse_args(argv)


def _capacity(args: argparse.Namespace, inputs: PlanInputs | None) -> int:
    try:
        try:
            users = [int(u) for u in str(args.users).split(",") if u.strip()]
        except ValueError:
            raise PlanInputError(f"--users takes whole numbers, comma-separated (50,500), not {args.users!r}") from None
        if args.bench is not None:
            try:
                results = json.loads(args.bench.read_text())
            except (OSError, ValueError) as exc:
                raise PlanInputError(f"cannot read {args.bench}: {exc}") from exc
            target, points = points_from_bench(results, args.target)
            source = f"measured: {args.bench}, target {target}"
        elif inputs is not None:
            points = points_from_planner(inputs, args.output_tokens, args.efficiency)
            models = ", ".join(map(str, inputs.models))
            source = (f"estimated: {models} on {inputs.gpu}, decode ceiling x {args.efficiency:g}, "
                      f"{args.output_tokens}-token answers; measure with cli.bench, pass --bench")  # fmt: skip
        else:
            raise PlanInputError("--users needs --bench FILE (measured) or a model (estimated)")
        plans = [plan_capacity(points, CapacityInputs(users=u, think_s=args.think_s,
                                                      latency_target_s=args.latency_target_s, spare_replicas=args.spare,
                                                      api_cpu_ms=args.api_cpu_ms, api_cores=args.api_cores))
                 for u in users]  # fmt: skip
    except PlanInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    if args.json:
        doc = {"source": source, "points": [p.__dict__ for p in points], "plans": [capacity_to_dict(c) for c in plans]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return EXIT_FITS
    gpus = inputs.tensor_parallel_size if inputs is not None else 1
    out = [f"One LLM replica ({source}):", "  concurrency  req/s  p50 s  p95 s"]
    out += [
        f"  {p.concurrency:>11}  {p.throughput_rps:5.2f}  {p.latency_p50_s:5.1f}  {p.latency_p95_s:5.1f}"
        for p in points
    ]
    out.append("")
    out.append("| users | think s | req/s | in flight | replica point | LLM replicas (+spare) | GPUs | API replicas |")
    out.append("|---|---|---|---|---|---|---|---|")
    for c in plans:
        pt = c.point
        out.append(f"| {c.inputs.users} | {c.inputs.think_s:g} | {c.arrival_rps:.2f} | {c.in_flight:.1f} | "
                   f"{pt.concurrency} users, {pt.throughput_rps:.2f} req/s, p95 {pt.latency_p95_s:.1f} s | "
                   f"{c.llm_replicas_needed} (+{c.llm_replicas - c.llm_replicas_needed}) | {c.llm_replicas * gpus} | "
                   f"{c.api_replicas} ({c.api_cores_busy:.2f} cores busy) |")  # fmt: skip
    notes = dict.fromkeys(n for c in plans for n in c.notes)
    out += [f"note: {n}" for n in notes]
    sys.stdout.write("\n".join(out) + "\n")
    return EXIT_FITS


def _gib(x: float) -> str:
    return f"{x:6.1f} GiB"


def render(plan: Plan) -> str:
    d = plan_to_dict(plan)
    s = plan.setup
    kv_note = " (16-bit)" if s.kv_cache_dtype == "auto" else ""
    out = [
        f"GPU: {s.gpu.name} ({s.gpu.memory_gib:g} GiB usable, {s.gpu.bandwidth_gbs:g} GB/s)"
        + (f" x {s.tensor_parallel} (tensor parallel)" if s.tensor_parallel > 1 else ""),
        f"Assumed: KV cache {s.kv_cache_dtype}{kv_note}, {s.reserve_gib:g} GiB kept for other processes, "
        f"vLLM profiling {s.batched_tokens} batched tokens / {s.seqs_cap} sequences",
        "",
    ]
    for mp, md in zip(plan.models, d["models"], strict=True):
        m, kv, dec = md["memory_gib"], md["kv_cache"], md["decode_ceiling_tok_s"]
        req = mp.request
        offloaded = f"  (+{m['cpu_offload']:g} GiB in host RAM)" if m["cpu_offload"] else ""
        checkpoint = f"  checkpoint {md['checkpoint']}" if md["checkpoint"] else ""
        if checkpoint and req.format.name == "fp8" and "fp8" not in checkpoint.lower():
            checkpoint += " (quantised to FP8 on load)"
        verdict = "FITS" if mp.fits else "DOES NOT FIT"
        out += [
            f"{md['model']}  [{req.format.label}]  {md['params_b']:g}B params "
            f"({md['active_params_b']:g}B read per token){checkpoint}",
            f"  weights            {_gib(m['weights'])}{offloaded}",
            f"  activations        {_gib(m['activations'])}  (profiling pass)",
            f"  non-torch          {_gib(m['non_torch'])}  (cuBLAS, NCCL)",
            f"  KV cache needed    {_gib(m['kv_cache_needed'])}  ({req.seqs} x {req.context:,} tokens,"
            f" {kv['bytes_per_token']:,} B/token, {kv['mib_per_sequence']:,} MiB/sequence)",
            f"  outside budget     {_gib(m['outside_budget'])}  (CUDA context, CUDA graphs)",
            f"  total needed       {_gib(m['total_needed'])}",
            f"  -> gpu_memory_utilization {mp.gpu_memory_utilization:.2f}: "
            + (
                f"KV cache {kv['available_gib']:.1f} GiB = {kv['tokens']:,} tokens, "
                f"{kv['max_concurrency_at_max_model_len']:.2f}x {req.context:,}-token sequences, "
                f"{kv['concurrency_at_typical_tokens']} at {min(s.typical_tokens, req.context):,} tokens"
                if kv["available_gib"] > 0
                else f"no room for a KV cache (weights and overheads exceed it by {-kv['available_gib']:.1f} GiB)"
            ),
            f"  -> {verdict}; largest max_model_len {md['largest_max_model_len']:,} for {req.seqs} sequence(s);"
            f" max_num_seqs {md['recommended_max_num_seqs']}"
            if md["largest_max_model_len"]
            else f"  -> {verdict}",
        ]  # fmt: skip
        if dec and kv["available_gib"] > 0:
            slow = f", CPU offload makes it {dec['offload_slowdown']:g}x slower" if dec["offload_slowdown"] > 1 else ""
            out.append(
                f"  decode ceiling     {dec['single_stream']:,} tok/s one stream, {dec['batch_total']:,} tok/s for "
                f"{dec['batch']} streams (memory bandwidth bound; expect 50-80%){slow}"
            )
        out += [f"  note: {n}" for n in mp.notes]
        out.append("")
    verdict = "FITS" if plan.fits else f"DOES NOT FIT (short by {plan.deficit_gib:.1f} GiB)"
    out.append(f"Verdict: {verdict}; unclaimed GPU memory {plan.free_gib:.1f} GiB")
    out += [f"note: {n}" for n in plan.notes]
    if plan.fixes:
        out.append("Cheapest ways to make it fit:")
        for i, fix in enumerate(plan.fixes, 1):
            first = fix.plan.models[0]
            out.append(
                f"  {i}. {fix.summary}: KV cache {first.kv_available_gib:.1f} GiB, "
                f"{first.max_concurrency:.1f}x {first.request.context:,}-token sequences, "
                f"gpu_memory_utilization {first.gpu_memory_utilization:.2f}"
            )
    return "\n".join(out) + "\n"


def render_catalogue() -> str:
    out = ["Models:"]
    for m in catalogue_to_list():
        out.append(
            f"  {m['model']:30s} {m['params_b']:8.2f}B  {m['native_format']:6s} ctx {m['max_position_embeddings']:>7,}"
            f"  KV {m['kv_bytes_per_token_bf16']:>7,} B/token (16-bit)  {m['description']}"
        )
    out.append("GPUs:")
    out += [f"  {g.key:14s} {g.name} ({g.memory_gib:g} GiB, {g.bandwidth_gbs:g} GB/s)" for g in GPUS.values()]
    out.append("Formats: " + ", ".join(FORMATS))
    return "\n".join(out) + "\n"


def show(plan: Plan) -> None:
    """render(), coloured in a terminal: the verdict green or red, headings bold."""
    for line in render(plan).splitlines():
        if "DOES NOT FIT" in line:
            style = "bold red"
        elif "FITS" in line:
            style = "bold green"
        else:
            style = "bold" if line and not line[0].isspace() else ""
        ui.say(line, style)


def main(argv: list[str] | None = None, prog: str = "python -m cli.plan") -> int:
    args = parse_args(argv, prog)
    if args.list:
        sys.stdout.write(json.dumps(catalogue_to_list(), indent=2) + "\n" if args.json else render_catalogue())
        return EXIT_FITS
    if args.users and not args.models:
        return _capacity(args, None)
    if not args.models:
        sys.stderr.write(f"error: name a model (one of: {', '.join(CATALOGUE)}) or a config.json; --list shows all\n")
        return EXIT_USAGE
    inputs = PlanInputs(
        models=list(args.models),
        format=args.format,
        max_model_len=args.max_model_len,
        seqs=args.seqs,
        kv_cache_dtype=args.kv_cache_dtype,
        gpu=args.gpu,
        gpu_memory_gib=args.gpu_memory_gib,
        gpu_bandwidth_gbs=args.gpu_bandwidth_gbs,
        tensor_parallel_size=args.tensor_parallel_size,
        host_ram_gib=args.host_ram_gib,
        reserve_gib=args.reserve_gib,
        cpu_offload_gb=args.cpu_offload_gb,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_num_seqs=args.max_num_seqs,
        typical_tokens=args.typical_tokens,
        gpu_memory_utilization=args.gpu_memory_utilization,
        repos=args.repo,
    )
    if args.users:
        return _capacity(args, inputs)
    if args.pair:
        return _pair(inputs, args)
    try:
        plan = build_plan(inputs, allow_paths=True)
    except PlanInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(json.dumps(plan_to_dict(plan), indent=2) + "\n")
    else:
        show(plan)
    if args.write_env:
        try:
            for path in write_env(plan, args.write_env):
                sys.stderr.write(f"wrote {path}\n")
        except EnvWriteError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_USAGE if plan.fits else EXIT_DOES_NOT_FIT
    return EXIT_FITS if plan.fits else EXIT_DOES_NOT_FIT


def render_pair(pair: PairPlan) -> str:
    names = [m.request.spec.name for m in pair.together.models]
    out = ["Both awake (co-resident):", *("  " + line for line in render(pair.together).splitlines()), ""]
    for i, plan in enumerate(pair.alone):
        out.append(f"{names[i]} awake, {names[1 - i]} asleep (keeping {pair.asleep_gib[1 - i]:.1f} GiB on the card):")
        out += ["  " + line for line in render(plan).splitlines()]
        out.append("")
    verdicts = {
        "co-resident": "CO-RESIDENT: both fit awake at once; no switching (LLM_MODELS without swap_group)",
        "switching": "SWITCHING: one awake at a time (LLM_MODELS with one swap_group, VLLM_ENABLE_SLEEP_MODE=true)",
        "neither": "DOES NOT FIT, not even one at a time",
    }
    out.append(f"Pair verdict: {verdicts[pair.mode]}")
    if pair.mode == "switching":
        out.append(
            "  wake from sleep level 1 copies the weights back from host RAM: about "
            + ", ".join(f"{n} {s:.1f} s" for n, s in zip(names, pair.wake_s, strict=True))
            + " (estimate at 25 GB/s; benchmarks/switch_time.py measures it); host RAM needed about "
            f"{pair.host_ram_needed_gib:.0f} GiB"
        )
    out += [f"note: {n}" for n in pair.notes]
    return "\n".join(out) + "\n"


def _pair(inputs: PlanInputs, args: argparse.Namespace) -> int:
    try:
        pair = build_pair(inputs, allow_paths=True)
    except PlanInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(json.dumps(pair_to_dict(pair), indent=2) + "\n")
    else:
        for line in render_pair(pair).splitlines():
            ui.say(line, "bold red" if "DOES NOT FIT" in line else "bold green" if "verdict" in line else "")
    fits = pair.mode != "neither"
    if args.write_env:
        try:
            write_pair_env(pair, args.write_env)
        except EnvWriteError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_USAGE if fits else EXIT_DOES_NOT_FIT
        sys.stderr.write(f"wrote {args.write_env}\n")
    return EXIT_FITS if fits else EXIT_DOES_NOT_FIT


if __name__ == "__main__":
    sys.exit(main())
