from recbole_hyperllm.model.hyperbolic.base import DivergenceError, HyperbolicBackbone
from recbole_hyperllm.model.hyperbolic.hgcf import HGCF

BACKBONES = {"HGCF": HGCF}

__all__ = ["BACKBONES", "DivergenceError", "HGCF", "HyperbolicBackbone"]
