"""The plugin's models: the backbones, and every framework composed with every backbone
(``<Framework>_<Backbone>``, e.g. ``HyperLLM_HGCF``, ``KAR_HGCH``, ``RLMRecCon_HyperCL``)."""
from recbole_hyperllm.model.framework import Framework, compose
from recbole_hyperllm.model.hellm import HeLLM, HeLLM_Pretrain
from recbole_hyperllm.model.hyperbolic import BACKBONES, DivergenceError, HGCF
from recbole_hyperllm.model.hyperllm import HyperLLM, VariantPlan
from recbole_hyperllm.model.kar import KAR
from recbole_hyperllm.model.rlmrec import RLMRecCon, RLMRecGen
from recbole_hyperllm.model.sella import SeLLaRec

FRAMEWORKS = {cls.framework_name: cls for cls in (HyperLLM, KAR, RLMRecCon, RLMRecGen)}
FRAMEWORK_MODELS = {f"{f}_{b}": compose(fc, bc) for f, fc in FRAMEWORKS.items() for b, bc in BACKBONES.items()}
MODELS = {**BACKBONES, **FRAMEWORK_MODELS}
MODELS.update(HeLLM=HeLLM, HeLLM_Pretrain=HeLLM_Pretrain)  # LLM recommenders (issue 15)
MODELS.update(SeLLaRec=SeLLaRec)  # SeLLa-Rec, a context-aware (CTR) model (issue 16)

__all__ = ["BACKBONES", "FRAMEWORKS", "FRAMEWORK_MODELS", "MODELS", "DivergenceError", "Framework", "HGCF",
           "HeLLM", "HeLLM_Pretrain", "HyperLLM", "KAR", "RLMRecCon", "RLMRecGen", "SeLLaRec", "VariantPlan",
           "compose"]
