"""GPU memory planning for vLLM: will a model fit, with which flags, and what to change when it does not.

Public surface: `make_plan` (and the request types), the catalogues, `env_fragment`.
"""

from backend.services.gpu_plan.architecture import ConfigError, ModelSpec, spec_from_config, spec_from_file
from backend.services.gpu_plan.catalogue import CATALOGUE, CatalogueEntry, get_entry
from backend.services.gpu_plan.formats import FORMATS, KV_DTYPES, FormatError, get_format
from backend.services.gpu_plan.hardware import DEFAULT_GPU, GPUS, HardwareError, get_gpu
from backend.services.gpu_plan.planner import ModelRequest, Plan, Setup, evaluate, make_plan

__all__ = [
    "CATALOGUE", "DEFAULT_GPU", "FORMATS", "GPUS", "KV_DTYPES", "CatalogueEntry", "ConfigError", "FormatError",
    "HardwareError", "ModelRequest", "ModelSpec", "Plan", "Setup", "evaluate", "get_entry", "get_format",
    "get_gpu", "make_plan", "spec_from_config", "spec_from_file",
]  # fmt: skip
