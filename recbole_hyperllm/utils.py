"""Model and trainer look-up: plugin models first, then RecBole's own (as RecBole-GNN does)."""
from pathlib import Path

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_hyperllm.model import MODELS, HyperLLM
from recbole_hyperllm.model.hyperbolic.base import HyperbolicBackbone
from recbole_hyperllm.trainer import HyperbolicTrainer

PROPERTIES = Path(__file__).resolve().parent.parent / "properties"


def get_model(model_name):
    """Model class by name: this plugin's models, else RecBole's."""
    if model_name in MODELS:
        return MODELS[model_name]
    return recbole_get_model(model_name)


def get_trainer(model_type, model_name):
    """HyperbolicTrainer for this plugin's models, RecBole's trainer otherwise."""
    model_class = MODELS.get(model_name)
    if model_class is not None and issubclass(model_class, (HyperbolicBackbone, HyperLLM)):
        return HyperbolicTrainer
    return recbole_get_trainer(model_type, model_name)


def model_property_files(model_name):
    """The plugin's YAML defaults for a model: overall, backbone, HyperLLM, then the model's own."""
    files = [PROPERTIES / "overall.yaml"]
    model_class = MODELS.get(model_name)
    if model_class is not None and issubclass(model_class, HyperLLM):
        files.append(PROPERTIES / "model" / f"{model_class.backbone_class.__name__}.yaml")
        files.append(PROPERTIES / "model" / "HyperLLM.yaml")
    files.append(PROPERTIES / "model" / f"{model_name}.yaml")
    return [str(f) for f in files if f.exists()]
