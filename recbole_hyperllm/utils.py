"""Model and trainer look-up: plugin models first, then RecBole's own (as RecBole-GNN does).

Everything here goes by what a model declares (``model/abstract.py``), never by its type."""
from pathlib import Path

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_hyperllm.model import MODELS

PROPERTIES = Path(__file__).resolve().parent.parent / "properties"


def get_model(model_name):
    """Model class by name: this plugin's models, else RecBole's."""
    if model_name in MODELS:
        return MODELS[model_name]
    return recbole_get_model(model_name)


def get_trainer(model_type, model_name):
    """The trainer the model declares (``trainer_class``), RecBole's otherwise."""
    declared = getattr(MODELS.get(model_name), "trainer_class", None)
    return declared() if declared else recbole_get_trainer(model_type, model_name)


def model_property_files(model_name):
    """The plugin's YAML defaults for a model: overall, then the files the model declares
    (``property_names``: e.g. backbone, framework, then the model's own). None for RecBole's own models:
    the plugin's defaults (Riemannian learner, summed validation metric) are not theirs."""
    if model_name not in MODELS:
        return []
    names = MODELS[model_name].property_names()
    files = [PROPERTIES / "overall.yaml"] + [PROPERTIES / "model" / f"{name}.yaml" for name in names]
    return [str(f) for f in files if f.exists()]
