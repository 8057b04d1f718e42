from recbole_hyperllm.model.kar.kar import KAR, HybridExpertAdaptor

__all__ = ["KAR", "HybridExpertAdaptor"]
