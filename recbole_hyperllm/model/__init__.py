"""The plugin's models: the backbones, and every framework composed with every backbone
(``<Framework>_<Backbone>``, e.g. ``HyperLLM_HGCF``, ``KAR_HGCH``, ``RLMRecCon_HyperCL``)."""
from recbole_hyperllm.model.framework import Framework, compose
from recbole_hyperllm.model.hyperbolic import BACKBONES, DivergenceError, HGCF
from recbole_hyperllm.model.hyperllm import HyperLLM, VariantPlan
from recbole_hyperllm.model.kar import KAR
from recbole_hyperllm.model.rlmrec import RLMRecCon, RLMRecGen

FRAMEWORKS = {cls.framework_name: cls for cls in (HyperLLM, KAR, RLMRecCon, RLMRecGen)}
FRAMEWORK_MODELS = {f"{f}_{b}": compose(fc, bc) for f, fc in FRAMEWORKS.items() for b, bc in BACKBONES.items()}
MODELS = {**BACKBONES, **FRAMEWORK_MODELS}

__all__ = ["BACKBONES", "FRAMEWORKS", "FRAMEWORK_MODELS", "MODELS", "DivergenceError", "Framework", "HGCF",
           "HyperLLM", "KAR", "RLMRecCon", "RLMRecGen", "VariantPlan", "compose"]
