from recbole_hyperllm.model.hyperbolic.base import DivergenceError, HyperbolicBackbone
from recbole_hyperllm.model.hyperbolic.hgcf import HGCF
from recbole_hyperllm.model.hyperbolic.hgch import HGCH
from recbole_hyperllm.model.hyperbolic.hicf import HICF
from recbole_hyperllm.model.hyperbolic.hrcf import HRCF
from recbole_hyperllm.model.hyperbolic.hypercl import HyperCL

BACKBONES = {"HGCF": HGCF, "HRCF": HRCF, "HICF": HICF, "HGCH": HGCH, "HyperCL": HyperCL}

__all__ = ["BACKBONES", "DivergenceError", "HGCF", "HICF", "HRCF", "HyperbolicBackbone"]
