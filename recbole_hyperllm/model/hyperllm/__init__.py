from recbole_hyperllm.model.hyperllm.hyperllm import HyperLLM, VariantPlan

__all__ = ["HyperLLM", "VariantPlan"]
