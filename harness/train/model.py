"""Model side of training: load (4-bit/8-bit/full), attach LoRA, loss on target positions."""

from __future__ import annotations

from typing import Any

import torch

from harness.engine.arch import decoder_and_head
from harness.errors import ConfigError, ModelError, first_line
from harness.train.recipe import TrainSpec


def linear_layer_names(model: Any) -> list[str]:
    """Short names of the model's linear layers (what LoRA target_modules can name)."""
    import torch

    names = set()
    for full, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in (
                "Linear4bit", "Linear8bitLt"):
            names.add(full.rsplit(".", 1)[-1])
    return sorted(names)


def disable_avx512bf16_repack(model: Any) -> None:
    """Keep bitsandbytes' trainable 4-bit layout: on CPUs with AVX512-BF16 an eval-mode forward
    repacks the weights, after which training gets no gradient through them.
    """
    for module in model.modules():
        if type(module).__name__ == "Linear4bit" and hasattr(module,
                                                             "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_for_training(spec: TrainSpec, device: str) -> Any:
    """The base (4-bit where the recipe says) with LoRA attached, ready to train."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    t = spec.training
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.quantization != "none":
        try:
            import bitsandbytes  # noqa: F401
        except Exception as err:
            raise ModelError(f"quantization: {spec.quantization} needs bitsandbytes ({err}); "
                             f"pip install bitsandbytes or --set quantization=none") from None
        if spec.quantization == "nf4":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=spec.double_quant,
                bnb_4bit_compute_dtype=getattr(torch, spec.compute_dtype))
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": device}
    else:
        # Frozen base in the mixed-precision dtype on GPU; fp32 on CPU (autocast does the rest).
        kwargs["dtype"] = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            t.precision, torch.float32) if device.startswith("cuda") else torch.float32
    from harness.models import materialize, resolve_base

    source = materialize(resolve_base(spec.base))
    kwargs.update(source.load_kwargs)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except Exception as err:
        raise ModelError(f"cannot load base {spec.base}: {first_line(err)}") from None
    if spec.quantization == "none":
        model.to(device)  # type: ignore[arg-type]  # transformers' stub takes a model
    else:
        disable_avx512bf16_repack(model)
    # Freeze the base. Unlike peft's prepare_model_for_kbit_training, frozen norms and
    # embeddings keep their loaded (compute) dtype: upcast to fp32 they turn every activation
    # between layers fp32, which costs a copy per op and buys no precision for frozen weights.
    # LoRA weights are created in fp32 by peft; matmuls run under autocast.
    for p in model.parameters():
        p.requires_grad_(False)
    available = linear_layer_names(model)
    missing = [m for m in spec.lora.target_modules if m not in available]
    if missing:
        raise ConfigError(f"lora.target_modules {', '.join(missing)} not in the model; its "
                          f"linear layers are: {', '.join(available)}")
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        layers = getattr(getattr(model, "model", None), "layers", None)
        if layers is not None and t.checkpoint_fraction < 1.0:
            # Memory the target-only loss saves can keep some layers' activations instead of
            # recomputing them: only the first fraction of the layers is checkpointed.
            keep = round(t.checkpoint_fraction * len(layers))
            for i, layer in enumerate(layers):
                if hasattr(layer, "gradient_checkpointing"):
                    layer.gradient_checkpointing = i < keep
    config = LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha,
                        lora_dropout=spec.lora.dropout,
                        target_modules=list(spec.lora.target_modules), bias=spec.lora.bias,
                        task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    if t.compile:
        # Each decoder layer compiled once (same code for every layer; shapes dynamic): at
        # batch 1 the step is bound by kernel launches, which compilation fuses away.
        layers = getattr(getattr(peft_model.get_base_model(), "model", None), "layers", None)
        if layers is None:
            raise ConfigError("training.compile: this architecture has no model.layers list")
        for layer in layers:
            layer.compile(dynamic=True)
    return peft_model


class TargetLoss(torch.nn.Module):
    """Summed cross-entropy over target tokens, computing the LM head only where labels are
    set (the prompt is most of a summarization row), in float32. Falls back to full logits for
    heads that are not a plain linear layer. An nn.Module, so `accelerate` can wrap it in DDP
    and the forward goes through the wrapper.
    """

    def __init__(self, peft_model: Any):
        super().__init__()
        self.peft_model = peft_model
        self.fast = decoder_and_head(peft_model) is not None

    def forward(self, input_ids: Any, attention_mask: Any, labels: Any) -> tuple[Any, Any]:
        """The loss over target tokens only, computing the LM head at those positions alone."""
        import torch.nn.functional as F

        shifted = labels[:, 1:]
        mask = shifted != -100
        inner = self.peft_model.get_base_model()
        if self.fast:
            # use_cache=False: no K/V cache built (and kept) during training.
            hidden = inner.model(input_ids=input_ids, attention_mask=attention_mask,
                                 use_cache=False).last_hidden_state
            logits = inner.lm_head(hidden[:, :-1][mask])
        else:
            logits = self.peft_model(input_ids=input_ids, attention_mask=attention_mask,
                                     use_cache=False).logits[:, :-1][mask]
        loss = F.cross_entropy(logits.float(), shifted[mask], reduction="sum")
        return loss, mask.sum()
