"""The offline default dataset: RecBole's bundled ml-100k with HyperLLM inputs made on first use.

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

NAME = "ml-100k"
SPLIT_SEED = 2020


def ml100k_folder(config):
    root = config.external_config_dict.get("data_path") or "dataset"
    return os.path.join(os.path.abspath(root), NAME)


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


def use_bundled_ml100k(config, structural=False, semantic=False):
    """Point ``config`` at the prepared ml-100k folder and its benchmark split (no-op for other datasets)."""
    if config["dataset"] != NAME:
        return
    folder = ml100k_folder(config)
    try:
        prepare_ml100k(folder, structural, semantic, config["ml100k_split_seed"] or SPLIT_SEED)
    except PipelineError as error:
        raise PipelineError(f"preparing the default {NAME} in {folder}: {error}") from None
    config["data_path"] = folder
    if config["benchmark_filename"] is None:
        config["benchmark_filename"] = list(pipeline.SPLITS)
