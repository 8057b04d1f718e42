from recbole_hyperllm.model.rlmrec.rlmrec import RLMRecCon, RLMRecGen, cosine_infonce, masked_cosine_infonce

__all__ = ["RLMRecCon", "RLMRecGen", "cosine_infonce", "masked_cosine_infonce"]
