"""GPUs the planner knows: memory as CUDA reports it (what vLLM multiplies by gpu_memory_utilization),
memory bandwidth (the decode ceiling) and the host link (what CPU offloading streams over)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    memory_gib: float
    bandwidth_gbs: float  # HBM/GDDR, GB/s
    host_link_gbs: float  # PCIe, GB/s actually reached host->device with pinned memory (~80% of the spec)
    fp8: bool  # FP8 tensor cores (Ada, Hopper, Blackwell)

    @property
    def large(self) -> bool:
        """vLLM raises its scheduler defaults on >= 70 GiB cards other than the A100 (arg_utils.py)."""
        return self.memory_gib >= 70 and "A100" not in self.name


# Usable memory as CUDA reports it: RTX PRO 6000 94.97 GiB (of 97,887 MiB; antirez/ds4#431), H100 79.22 GiB
# and RTX 4090 23.58 GiB (vLLM's own logs: vllm-project/vllm#10511, #14447), L40S 44.43 GiB (PyTorch's figure
# for the same 46,068 MiB Ada board). H200 and A100 figures are nvidia-smi's less the usual ~0.6 GiB.
GPUS: dict[str, GPU] = {
    g.key: g
    for g in (
        GPU("rtx-pro-6000", "NVIDIA RTX PRO 6000 Blackwell 96 GB", 94.97, 1792, 50, True),
        GPU("h100-80gb", "NVIDIA H100 SXM 80 GB", 79.22, 3350, 50, True),
        GPU("h200", "NVIDIA H200 141 GB", 139.81, 4800, 50, True),
        GPU("l40s", "NVIDIA L40S 48 GB", 44.43, 864, 25, True),
        GPU("rtx-4090", "NVIDIA GeForce RTX 4090 24 GB", 23.58, 1008, 25, True),
        GPU("a100-40gb", "NVIDIA A100 40 GB", 39.39, 1555, 25, False),
        GPU("a100-80gb", "NVIDIA A100 80 GB", 79.15, 2039, 25, False),
    )
}
DEFAULT_GPU = "rtx-pro-6000"


class HardwareError(ValueError):
    pass


def get_gpu(key: str, memory_gib: float | None = None, bandwidth_gbs: float | None = None) -> GPU:
    """A catalogue GPU, or `custom` with both figures given; either figure overrides the catalogue's."""
    if key == "custom":
        if not memory_gib or not bandwidth_gbs:
            raise HardwareError("--gpu custom needs --gpu-memory-gib and --gpu-bandwidth-gbs")
        return GPU("custom", f"custom GPU ({memory_gib:g} GiB)", memory_gib, bandwidth_gbs, 25, True)
    try:
        gpu = GPUS[key.lower()]
    except KeyError:
        raise HardwareError(f"unknown GPU {key!r}; choose one of {', '.join(GPUS)} or custom") from None
    if memory_gib or bandwidth_gbs:
        gpu = GPU(gpu.key, gpu.name, memory_gib or gpu.memory_gib, bandwidth_gbs or gpu.bandwidth_gbs,
                  gpu.host_link_gbs, gpu.fp8)  # fmt: skip
    return gpu
