"""HeLLM (Xu et al. 2025, arXiv 2504.10541): stage 1 ``HeLLM_Pretrain`` (hypergraph contrastive pre-training, a
RecBole GeneralRecommender) and stage 2 ``HeLLM`` (a LoRA-tuned causal LM fed with the stage-1 embeddings, a RecBole
SequentialRecommender)."""
from recbole_hyperllm.model.hellm.hellm import HeLLM
from recbole_hyperllm.model.hellm.pretrain import HeLLM_Pretrain

__all__ = ["HeLLM", "HeLLM_Pretrain"]
