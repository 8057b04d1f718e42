"""SeLLa-Rec (arXiv 2504.10107) as a RecBole context-aware model: ``SeLLaRec`` (``model.py``), its cached steps 1
and 2 (``steps.py``), prompts (``prompts.py``), losses and grouped AUCs (``losses.py``) and trainer
(``trainer.py``: RecBole's loop with GAUC/UAUC and a cap on rows per epoch)."""
from recbole_hyperllm.model.sella.model import TRAINABLE, VARIANTS, SeLLaRec
from recbole_hyperllm.model.sella.trainer import CTRTrainer

__all__ = ["CTRTrainer", "SeLLaRec", "TRAINABLE", "VARIANTS"]
