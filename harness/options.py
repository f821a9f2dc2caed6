"""`EngineOptions`: how the engine computes, as one frozen object built once per command and
handed down (runner → Engine → its layouts, decoding and kernels). report.json records it
with what the engine then did; the fields that change numbers enter the result-store key.

Built from these documented environment variables, read (and checked) by harness/env.py
only. (`--compile` was removed: torch.compile'd layers lost to the default path on every
workload measured, bench/RESULTS.md.)

- HARNESS_FUSED = auto | 0 | 1 → fused = auto (CUDA, half precision) | off | on (also CPU
  tensors under TRITON_INTERPRET=1: the tests);
- HARNESS_CHOICES_ATTN = flash | mask | segments → choices_attention, the multiple-choice
  layout (flash: segments through flash attention where it serves, else masked rows);
- HARNESS_FAST_DECODE = 1 | 0 → greedy_loop: the harness's greedy loop (0: transformers'
  generate);
- HARNESS_DECODE_ATTN = auto | grouped | sdpa → decode_attention, the decode step's
  attention (auto: the Triton grouped kernel, else flash varlen, else sdpa);
- HARNESS_CUDA_GRAPHS = 1 | 0 → cuda_graphs: decode steps replayed as a CUDA graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Fused = Literal["auto", "on", "off"]
ChoicesAttention = Literal["flash", "mask", "segments"]
DecodeAttention = Literal["auto", "grouped", "sdpa"]


@dataclass(frozen=True)
class EngineOptions:
    """How the engine computes (see the module docstring for each field's variable)."""

    fused: Fused = "auto"
    choices_attention: ChoicesAttention = "flash"
    greedy_loop: bool = True
    decode_attention: DecodeAttention = "auto"
    cuda_graphs: bool = True

    @classmethod
    def from_env(cls) -> EngineOptions:
        """The options a command runs with: from the checked environment."""
        from harness import env

        fused = {"auto": "auto", "1": "on", "0": "off"}[env.get("HARNESS_FUSED")]
        return cls(fused=fused,  # type: ignore[arg-type]
                   choices_attention=env.get("HARNESS_CHOICES_ATTN"),  # type: ignore[arg-type]
                   greedy_loop=env.get("HARNESS_FAST_DECODE") != "0",
                   decode_attention=env.get("HARNESS_DECODE_ATTN"),  # type: ignore[arg-type]
                   cuda_graphs=env.get("HARNESS_CUDA_GRAPHS") != "0")

    def numerics(self) -> dict[str, Any]:
        """The fields that change the numbers an example gets (not only speed): the store key
        holds them. CUDA graphs replay the same kernels, so they are not among them.
        """
        return {"fused": self.fused,
                "choices_attention": self.choices_attention,
                "greedy_loop": self.greedy_loop, "decode_attention": self.decode_attention}

    def to_json(self) -> dict[str, Any]:
        """The options as report.json's settings.engine."""
        return asdict(self)
