"""Model and trainer look-up: plugin models first, then RecBole's own (as RecBole-GNN does).

Everything here goes by what a model declares (``model/abstract.py``), never by its type."""
import difflib
from pathlib import Path

import torch
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_hyperllm.errors import ConfigError
from recbole_hyperllm.model import BACKBONES, MODELS
from recbole_hyperllm.trainer import with_trusted_checkpoints

PROPERTIES = Path(__file__).resolve().parent.parent / "properties"


def get_model(model_name):
    """Model class by name: this plugin's models, else RecBole's; an unknown name is a ConfigError that
    suggests the nearest plugin model names."""
    if model_name in MODELS:
        return MODELS[model_name]
    anomaly = torch.is_anomaly_enabled()
    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError, AttributeError):  # RecBole's import of its optional libraries
        by_case = {name.lower(): name for name in MODELS}
        near = ([by_case[model_name.lower()]] if model_name.lower() in by_case else
                difflib.get_close_matches(model_name, list(MODELS), n=3, cutoff=0.6))
        hint = f"did you mean {' or '.join(near)}? " if near else ""
        raise ConfigError(f"unknown model {model_name!r}: {hint}This plugin's models are the backbones "
                          f"{', '.join(sorted(BACKBONES))} and <Framework>_<Backbone> with "
                          f"Framework in HyperLLM, KAR, RLMRecCon, RLMRecGen, and the LLM recommenders HeLLM, HeLLM_Pretrain, SeLLaRec (CTR); "
                          f"RecBole's own models go by their class "
                          f"name, e.g. BPR") from None
    finally:  # RecBole's look-up imports all its model modules; sine.py turns anomaly detection on for the process
        torch.autograd.set_detect_anomaly(anomaly)


def get_trainer(model_type, model_name):
    """The trainer the model declares (``trainer_class``); RecBole's otherwise, loading its own best
    checkpoint on torch >= 2.6 (``trainer.with_trusted_checkpoints``)."""
    declared = getattr(MODELS.get(model_name), "trainer_class", None)
    return declared() if declared else with_trusted_checkpoints(recbole_get_trainer(model_type, model_name))


def declared_side_files(config):
    """{suffix: columns} of the atomic files the configured model declares it reads (none for RecBole's)."""
    return getattr(MODELS.get(config["model"]), "side_files", lambda c: {})(config)


def model_property_files(model_name):
    """The plugin's YAML defaults for a model: overall, then the files the model declares
    (``property_names``: e.g. backbone, framework, then the model's own). None for RecBole's own models:
    the plugin's defaults (Riemannian learner, summed validation metric) are not theirs."""
    if model_name not in MODELS:
        return []
    names = MODELS[model_name].property_names()
    files = [PROPERTIES / "overall.yaml"] + [PROPERTIES / "model" / f"{name}.yaml" for name in names]
    return [str(f) for f in files if f.exists()]
