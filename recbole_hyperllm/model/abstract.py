"""What a model of this plugin declares, so that look-up, trainer, YAML defaults, side inputs and the
steps before training go by the model and never by its type.

``utils.get_trainer``, ``utils.model_property_files``, ``quick_start`` and ``run_recbole_hyperllm.py``
read only these declarations. RecBole's own models declare none of them and get RecBole's defaults.
"""


class PluginModel:
    """Declarations of a plugin model (a mixin in front of a RecBole recommender)."""

    shard = (0, 1)  # (rank, world size) of a multi-process run (``set_shard``)

    def _apply(self, fn, recurse=True):
        """``model.to(device)`` (and ``.cuda()``, ``.double()`` ...) also moves the model's sparse graphs, which
        are not buffers (torch cannot broadcast sparse buffers under DDP), and ``self.device`` (set once by
        RecBole from the config) follows the parameters, so tensors made on ``self.device`` meet them there."""
        from recbole_hyperllm.graph import SparseGraph

        super()._apply(fn, recurse)
        for name, value in list(vars(self).items()):
            if isinstance(value, SparseGraph):
                setattr(self, name, value.apply(fn))
        parameter = next(self.parameters(), None)
        if parameter is not None and hasattr(self, "device"):
            self.device = parameter.device
        return self

    @classmethod
    def trainer_class(cls):
        """The trainer that fits this model (the plugin's ``HyperbolicTrainer``)."""
        from recbole_hyperllm.trainer import HyperbolicTrainer

        return HyperbolicTrainer

    @classmethod
    def property_names(cls):
        """Names of the YAML files under ``properties/model/`` that hold this model's defaults, in loading
        order (after ``properties/overall.yaml``, before the user's files)."""
        return (cls.__name__,)

    @classmethod
    def uses_fixed_split(cls):
        """True: on the offline ml-100k this model reads the plugin's fixed per-user random 8:1:1 split (benchmark
        files train/valid/test, made once; user summaries come from its training part). False: it splits
        ``ml-100k.inter`` itself by its own ``eval_args`` (e.g. HeLLM's time-ordered leave-one-out);
        ``dataset_tools.default_data.prepare_inputs`` then adds no ``benchmark_filename``."""
        return True

    @classmethod
    def side_files(cls, config):
        """{suffix: columns} of the atomic files beside the interactions that this configured model reads."""
        return {}

    def before_training(self, config, train_data, valid_data, logger, show_progress=False, resume=None):
        """A step run before the trainer is built (e.g. HyperLLM's phase 1); returns a JSON-able record or None.
        ``resume``: the checked state of a progress file this step wrote (``resume_from``), to continue it;
        always None for a model whose step writes none (only HyperLLM's phase 1 does)."""
        return None

    def skips_training(self):
        """True when the model is reported as ``before_training`` left it (e.g. HyperLLM's only-Semantic)."""
        return False

    def begin_epoch(self, epoch):
        """Called by the trainer before training epoch ``epoch`` (0-based), resumed runs included."""

    def share_terms(self):
        """Names of the loss terms that are this process's share of the full-batch loss in a multi-process
        run (sums over its part of the batch or of the model's own samples); the others are whole terms each
        process estimates in full (``recbole_hyperllm/distributed.py``)."""
        return frozenset()

    def set_shard(self, rank, world):
        """Called by the trainer with this process's rank and the world size (0, 1 in one process)."""
        self.shard = (rank, world)
