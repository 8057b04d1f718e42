from recbole_hyperllm.model.hyperbolic import BACKBONES
from recbole_hyperllm.model.hyperllm.hyperllm import HyperLLM, VariantPlan, hyperllm_for

HYPERLLM_MODELS = {f"HyperLLM_{name}": hyperllm_for(cls) for name, cls in BACKBONES.items()}
globals().update(HYPERLLM_MODELS)

__all__ = ["HYPERLLM_MODELS", "HyperLLM", "VariantPlan", "hyperllm_for", *HYPERLLM_MODELS]
