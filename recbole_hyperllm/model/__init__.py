from recbole_hyperllm.model.hyperbolic import BACKBONES, DivergenceError, HGCF
from recbole_hyperllm.model.hyperllm import HYPERLLM_MODELS, HyperLLM, VariantPlan, hyperllm_for

MODELS = {**BACKBONES, **HYPERLLM_MODELS}
