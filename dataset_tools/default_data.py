"""The explicit step before training: make the offline default dataset's inputs and check where the
user summaries came from (``prepare_inputs``; the run scripts call it, the training core never does).

The offline default dataset is RecBole's bundled ml-100k with the LLM-side inputs made on first use.

``--dataset=ml-100k`` (RecBole always reads its bundled copy for that name) becomes
``<data_path or ./dataset>/ml-100k/`` holding a fixed random 8:1:1 split per user
(seed ``ml100k_split_seed``, default 2020, RecBole benchmark files, so user summaries can be built from the training
split only) and, when the model needs them, the pipeline's outputs from the
``metadata`` provider (tags and summaries from titles, years and genres, not an LLM)
encoded with all-MiniLM-L6-v2. Each part is made once and reused; the embeddings are
cached in ``llm/vectors.sqlite``.
"""
import os
import sys

from dataset_tools import pipeline
from dataset_tools.common import PipelineError, file_fingerprint
from recbole_hyperllm.atomic import AtomicFileError

NAME = "ml-100k"
SPLIT_SEED = 2020


def ml100k_folder(data_path):
    return os.path.join(os.path.abspath(data_path or "dataset"), NAME)


def _missing(folder, suffixes):
    return [s for s in suffixes if not os.path.isfile(pipeline.dataset_file(folder, NAME, s))]


def _train_fingerprint(folder):
    return file_fingerprint(pipeline.dataset_file(folder, NAME, "train.inter"))


def _users_stale(folder):
    return pipeline.users_split_fingerprint(folder) != _train_fingerprint(folder)


def _vectors_stale(folder):
    return pipeline.embedded_split_fingerprint(folder) != _train_fingerprint(folder)


def prepare_ml100k(folder, structural, semantic, split_seed=SPLIT_SEED):
    """Make what is missing in ``folder``: split always, tag files if ``structural``, embeddings if ``semantic``.

    User summaries are remade whenever the training split they were built from changed."""
    from dataset_tools.providers import MetadataProvider

    pipeline.import_movielens(folder, NAME)
    pipeline.split_dataset(folder, NAME, seed=split_seed)
    need_tags = structural and _missing(folder, ("tag", "tagedge", "itemtag"))
    need_vectors = semantic and (_missing(folder, ("itememb", "useremb")) or _vectors_stale(folder))
    if not (need_tags or need_vectors):
        return folder
    print(f"{NAME}: making HyperLLM inputs in {folder} with the metadata provider (tags and summaries from the "
        "items' titles, years and genres; not an LLM). See dataset_tools for a real LLM endpoint.", file=sys.stderr)
    provider = MetadataProvider("movie")
    if not os.path.isfile(pipeline.work_file(folder, "items.json")):
        pipeline.run_items(folder, NAME, provider)
    if structural:
        pipeline.run_write(folder, NAME)
    if semantic:
        from dataset_tools.encode import load_encoder

        if _users_stale(folder):
            pipeline.run_users(folder, NAME, provider)
        pipeline.run_encode(folder, NAME, load_encoder("minilm"))
    return folder


def prepare_inputs(model, dataset, config_file_list=None, config_dict=None):
    """The config overrides a run of ``model`` on ``dataset`` needs, after making what it reads.

    For ``ml-100k``: the split of RecBole's bundled copy and, as the model declares it reads them
    (``side_files``), the tag files and the embeddings, in ``<data_path or ./dataset>/ml-100k/`` (where
    the plugin reads ml-100k, as any dataset); ``benchmark_filename`` then names the split, unless the model
    splits the interactions itself (``uses_fixed_split``: HeLLM's time-ordered leave-one-out, RecBole's
    sequential models).
    For every dataset: user embeddings that dataset_tools built must come from the training split the run
    uses. Returns ``config_dict`` with those overrides added (a new dict).
    """
    from recbole_hyperllm.quick_start import create_config
    from recbole_hyperllm.utils import declared_side_files

    config = create_config(model, dataset, config_file_list, config_dict)
    overrides = dict(config_dict or {})
    needs = declared_side_files(config)
    if dataset == NAME:
        folder = ml100k_folder(config.external_config_dict.get("data_path"))
        try:
            prepare_ml100k(folder, "tag" in needs, "useremb" in needs or "itememb" in needs,
                           config["ml100k_split_seed"] or SPLIT_SEED)
        except PipelineError as error:
            raise PipelineError(f"preparing the default {NAME} in {folder}: {error}") from None
        if config["benchmark_filename"] is None and uses_fixed_split(model, config):
            overrides["benchmark_filename"] = list(pipeline.SPLITS)
    if "useremb" in needs:
        check_user_summaries_split(config["data_path"], dataset,
                                   overrides.get("benchmark_filename", config["benchmark_filename"]))
    return overrides


def uses_fixed_split(model, config):
    """Whether a run of ``model`` on the offline ml-100k reads the fixed 8:1:1 benchmark files: as a plugin model
    declares (``PluginModel.uses_fixed_split``; HeLLM: no, it splits by time itself), and for RecBole's own models
    unless they are sequential (their augmentation needs the interactions whole, split by their ``eval_args``)."""
    from recbole.utils import ModelType

    from recbole_hyperllm.model import MODELS

    declared = getattr(MODELS.get(model), "uses_fixed_split", None)
    if declared is not None:
        return declared()
    return config["MODEL_TYPE"] != ModelType.SEQUENTIAL


def check_user_summaries_split(data_path, dataset, benchmark_filename):
    """User summaries made by dataset_tools must come from the training split this run uses (no leak of
    validation/test items into them)."""
    built_from = pipeline.embedded_split_fingerprint(data_path) or pipeline.users_split_fingerprint(data_path)
    if built_from is None:
        return
    train = os.path.join(data_path, f"{dataset}.train.inter")
    if not benchmark_filename or "train" not in benchmark_filename:
        raise AtomicFileError(
            f"{os.path.join(data_path, dataset)}.useremb was built from {train} by dataset_tools, but this run "
            "splits the interactions itself, so its validation/test items may be in the user summaries: set "
            "benchmark_filename: [train, valid, test]")
    if not os.path.isfile(train) or file_fingerprint(train) != built_from:
        raise AtomicFileError(
            f"{os.path.join(data_path, dataset)}.useremb was built from another training split than {train}: rerun "
            f"`python -m dataset_tools users {dataset} --out {os.path.dirname(data_path)}` and the encode stage")
