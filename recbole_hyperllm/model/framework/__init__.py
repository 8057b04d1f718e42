from recbole_hyperllm.model.framework.base import Framework, compose

__all__ = ["Framework", "compose"]
