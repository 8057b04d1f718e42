"""RecBole trainers for hyperbolic models.

``HyperbolicTrainer`` extends RecBole's ``Trainer`` with
* Riemannian optimisers from geoopt (``learner: rsgd`` / ``radam``);
* a non-finite-loss check that names the loss term, the epoch and the batch;
* validation on a sum of metrics (``valid_metric: recall@10+recall@20+ndcg@10+ndcg@20``,
  the paper's model selection);
* checkpoint loading that works on torch >= 2.6 (RecBole pickles its Config into
  the checkpoint, which ``weights_only=True`` refuses; the file is the one this
  trainer wrote in this run);
* checkpoint names no two runs share (``run_stamp``: RecBole's are to the second, so two runs started
  together in one folder read each other's models), absolute, written atomically;
* per-epoch timings and the validation history (``best_epoch``);
* a progress checkpoint after every epoch (``<best file>-last.pth``, written
  atomically) from which ``resume_from`` continues a crashed run at the next
  epoch with the model, optimiser state, early-stopping state and best file.
"""
import datetime
import os
import secrets
import time

import numpy as np
import torch
from geoopt.optim import RiemannianAdam, RiemannianSGD
from recbole.trainer import Trainer

from recbole_hyperllm import distributed
from recbole_hyperllm.errors import CheckpointError, DivergenceError

RIEMANNIAN_LEARNERS = {"rsgd": RiemannianSGD, "radam": RiemannianAdam}


def check_finite_terms(losses, names, epoch_idx, batch_idx):
    """Raise DivergenceError naming the first non-finite loss term. One host synchronisation per batch (all
    terms tested at once); the terms are looked at one by one only once that test fails."""
    values = losses if isinstance(losses, tuple) else (losses,)
    if bool(torch.isfinite(torch.stack([v.detach().reshape(()) for v in values])).all()):
        return
    names = tuple(names or ()) + tuple(f"loss[{i}]" for i in range(len(names or ()), len(values)))
    for name, value in zip(names, values):
        if not torch.isfinite(value).all():
            raise DivergenceError(
                f"loss term '{name}' is {value.item()} at epoch {epoch_idx}, batch {batch_idx}: training "
                "diverged and is stopped; no metrics are reported. Lower learning_rate or the margin "
                "of that term, or check the inputs it reads."
            )


def load_trusted_checkpoint(path, device):
    """A checkpoint written by a RecBole trainer of this plugin (contains a pickled Config); a file that is
    not one (truncated, garbage, not torch) is a CheckpointError naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found") from None
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ValueError... by content
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({reason}): it is truncated or "
                              "another kind of file") from None


def run_stamp():
    """``<local time to the microsecond>-<process id>-<4 random hex digits>``: a name part no two runs share
    (RecBole names checkpoints by the second)."""
    return f"{datetime.datetime.now():%b-%d-%Y_%H-%M-%S-%f}-{os.getpid()}-{secrets.token_hex(2)}"


def save_atomically(state, path):
    """``torch.save`` to a name of this process, then rename: a reader sees the old file or the whole new one,
    and two processes never write the same temporary file."""
    partial = f"{path}.{os.getpid()}-{secrets.token_hex(3)}.partial"
    try:
        torch.save(state, partial)
        os.replace(partial, path)
    except OSError as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise CheckpointError(f"cannot write {path} ({error.strerror or error}); use --checkpoint_dir=<a writable "
                              "folder with free space>") from None


class TrustedCheckpoints:
    """Loads the best checkpoint this trainer wrote with ``weights_only=False`` (RecBole pickles its Config
    into it, which torch >= 2.6 refuses by default), under a name no other run shares (absolute, so a
    resumed run finds it from any folder), written atomically. A mixin in front of any RecBole trainer."""

    def __init__(self, config, model):
        multi_process = distributed.is_distributed(config)
        config["single_spec"] = True  # RecBole's wrapper passes device_ids=[rank], which a CPU module refuses
        try:
            super().__init__(config, model)
        finally:
            config["single_spec"] = not multi_process
        if multi_process:
            self.distributed_model = distributed.wrap_model(config, self.model)
        name = distributed.from_rank0(config, f"{config['model']}-{run_stamp()}.pth")  # one run, one name
        self.saved_model_file = os.path.abspath(os.path.join(self.checkpoint_dir, name))

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's best-model checkpoint (the same keys as ``Trainer._save_checkpoint``, rank 0 only),
        written by ``save_atomically``."""
        if not distributed.is_writer(self.config):
            return
        target = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": self.config, "epoch": epoch, "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score, "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(), "optimizer": self.optimizer.state_dict(),
        }
        save_atomically(state, target)
        if verbose:
            self.logger.info(f"Saving current: {target}")

    def _restore(self, checkpoint, with_optimizer=False):
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        if with_optimizer:
            self.optimizer.load_state_dict(checkpoint["optimizer"])

    def load_best(self, model_file=None):
        distributed.barrier(self.config)  # rank 0 may still be writing it
        self._restore(load_trusted_checkpoint(model_file or self.saved_model_file, self.device))

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            self.load_best(model_file)
            self.logger.info(f"Loading model structure and parameters from {model_file or self.saved_model_file}")
        return super().evaluate(eval_data, load_best_model=False, model_file=model_file, show_progress=show_progress)


def with_trusted_checkpoints(trainer_class):
    """``trainer_class`` (a RecBole trainer) loading its own checkpoints on torch >= 2.6."""
    return type(trainer_class.__name__, (TrustedCheckpoints, trainer_class), {"__module__": __name__})


class HyperbolicTrainer(TrustedCheckpoints, Trainer):
    progress_phase = None  # which training a progress file continues: None the run's, "meta" HyperLLM's phase 1

    def __init__(self, config, model):
        super().__init__(config, model)
        getattr(model, "set_shard", lambda rank, world: None)(*distributed.rank_and_world(config))
        self.valid_history = []
        self.valid_results = []  # every validation's metrics (for convergence plots)
        self.train_seconds = []
        self.valid_seconds = []
        self.progress_file = self.saved_model_file[: -len(".pth")] + "-last.pth"

    def _build_optimizer(self, **kwargs):
        params = [p for p in kwargs.pop("params", self.model.parameters()) if p.requires_grad]
        learner = kwargs.pop("learner", self.learner).lower()
        lr = kwargs.pop("learning_rate", self.learning_rate)
        weight_decay = kwargs.pop("weight_decay", self.weight_decay)
        if learner == "rsgd":
            return RiemannianSGD(params, lr=lr, momentum=self.config["momentum"] or 0.0, weight_decay=weight_decay)
        if learner == "radam":
            return RiemannianAdam(params, lr=lr, weight_decay=weight_decay)
        return super()._build_optimizer(params=params, learner=learner, learning_rate=lr, weight_decay=weight_decay)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if epoch_idx > self.start_epoch:  # the state after epoch_idx - 1, validation included
            self.save_progress(epoch_idx)
        getattr(self.model, "begin_epoch", lambda epoch: None)(epoch_idx)
        loss_func = loss_func or self.model.calculate_loss
        batch_counter = iter(range(10**12))
        _, world = distributed.rank_and_world(self.config)
        shares = getattr(self.model, "share_terms", lambda: ())()

        def checked_loss(interaction):
            losses = loss_func(interaction)
            names = getattr(self.model, "last_loss_names", None)
            check_finite_terms(losses, names, epoch_idx, next(batch_counter))
            return distributed.scale_shares(losses, names, shares, world)

        start = time.perf_counter()
        result = super()._train_epoch(train_data, epoch_idx, loss_func=checked_loss, show_progress=show_progress)
        self.train_seconds.append(time.perf_counter() - start)
        return result

    def _valid_epoch(self, valid_data, show_progress=False):
        start = time.perf_counter()
        valid_result = self.evaluate(valid_data, load_best_model=False, show_progress=show_progress)
        keys = [k.strip() for k in self.valid_metric.split("+")]
        missing = [k for k in keys if k not in valid_result]
        if missing:
            raise KeyError(f"valid_metric names {missing}, which are not among the computed metrics {sorted(valid_result)}; "
                           "add them to 'metrics' and 'topk'")
        score = float(sum(valid_result[k] for k in keys))
        self.valid_history.append(score)
        self.valid_results.append({k: float(v) for k, v in valid_result.items()})
        self.valid_seconds.append(time.perf_counter() - start)
        return score, valid_result

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's fit; a finished run then rewrites its progress file, so that it keeps the validation
        history of every epoch (and can be continued with more epochs)."""
        result = super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                             callback_fn=callback_fn)
        if self.train_seconds:
            self.save_progress(len(self.train_seconds))
        return result

    @property
    def epoch_seconds(self):
        """Training + validation seconds of every epoch run (validation 0 where it did not run)."""
        valid = self.valid_seconds + [0.0] * (len(self.train_seconds) - len(self.valid_seconds))
        return [t + v for t, v in zip(self.train_seconds, valid)]

    @property
    def seconds_to_best(self):
        """Training + validation seconds up to the end of the best epoch (None before any validation)."""
        best = self.best_epoch
        return None if best is None else sum(self.epoch_seconds[: best + 1])

    @property
    def best_epoch(self):
        """Epoch (0-based) RecBole kept: the last one reaching the best score (its test uses >=)."""
        if not self.valid_history:
            return None
        history = np.asarray(self.valid_history)
        best = history.max() if self.valid_metric_bigger else history.min()
        return int(np.flatnonzero(history == best)[-1]) * self.eval_step + self.eval_step - 1

    def save_progress(self, next_epoch):
        """Everything needed to continue at ``next_epoch`` (atomic write: a crash keeps the previous file);
        rank 0 only in a multi-process run."""
        if not distributed.is_writer(self.config):
            return
        state = {
            "model": self.config["model"], "dataset": self.config["dataset"], "next_epoch": next_epoch,
            "cur_step": self.cur_step, "best_valid_score": self.best_valid_score,
            "best_valid_result": self.best_valid_result, "best_model_file": self.saved_model_file,
            "state_dict": self.model.state_dict(), "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(), "valid_history": self.valid_history,
            "valid_results": self.valid_results, "eval_step": self.eval_step,
            "train_seconds": self.train_seconds, "valid_seconds": self.valid_seconds, "phase": self.progress_phase,
        }
        save_atomically(state, self.progress_file)
        if next_epoch == self.start_epoch + 1:
            self.logger.info(f"progress checkpoint after every epoch: {self.progress_file} "
                             f"(after a crash, rerun with --resume_from={self.progress_file})")

    def resume_progress(self, state):
        """Continue a run from the state ``read_progress_file`` checked (a file of ``save_progress``)."""
        try:
            self._restore(state, with_optimizer=True)
        except (RuntimeError, ValueError) as error:  # load_state_dict: other sizes or parameters
            reason = str(error).splitlines()[1 if len(str(error).splitlines()) > 1 else 0].strip()[:160]
            raise CheckpointError(f"resume_from: {state['progress_file']} was trained with other settings ({reason}); "
                                  "resume with the interrupted run's settings (embedding_size, n_layers, ...)") from None
        self.start_epoch = state["next_epoch"]
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"]
        self.saved_model_file = state["best_model_file"] or self.saved_model_file
        self.progress_file = state["progress_file"]
        self.valid_history = list(state["valid_history"])
        self.valid_results = list(state.get("valid_results", []))
        self.train_seconds = list(state["train_seconds"])
        self.valid_seconds = list(state["valid_seconds"])
        self.logger.info(f"resuming from {self.progress_file} at epoch {self.start_epoch} "
                         f"(best valid score so far {self.best_valid_score})")


PROGRESS_KEYS = ("model", "dataset", "next_epoch", "best_model_file", "state_dict", "optimizer", "valid_history")


def read_progress_file(path, model, dataset):
    """The state of a ``save_progress`` file, checked before any data is loaded: it is a progress checkpoint
    of ``model`` on ``dataset``, and the run's best-model file exists (where it was written, which is
    absolute, or beside the progress file when the folder was moved). CheckpointError names what is wrong."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"resume_from: {path} not found; pass the '-last.pth' file the interrupted run logged")
    try:
        state = load_trusted_checkpoint(path, "cpu")
    except CheckpointError as error:
        raise CheckpointError(f"resume_from: {error}; pass the '-last.pth' file the interrupted run logged") from None
    if not isinstance(state, dict) or any(key not in state for key in PROGRESS_KEYS):
        kind = ("a best-model checkpoint (RecBole's '<model>-<time>.pth')"
                if isinstance(state, dict) and {"config", "epoch", "state_dict"} <= set(state) else
                f"a {type(state).__name__}, not a checkpoint of this plugin")
        raise CheckpointError(f"resume_from: {path} is {kind}; pass the progress file, the '-last.pth' file "
                              "beside it that the interrupted run logged")
    if (state["model"], state["dataset"]) != (model, dataset):
        raise CheckpointError(f"resume_from: {path} is a {state['model']} run on {state['dataset']}, not {model} on "
                              f"{dataset}; pass --model={state['model']} --dataset={state['dataset']}")
    state["progress_file"] = path
    if state["valid_history"]:  # a best model was saved: the final test loads it
        state["best_model_file"] = _find_best_file(state["best_model_file"], path)
    else:  # no validation yet: the resumed run names its own best file
        state["best_model_file"] = None
    return state


def _find_best_file(recorded, progress_file):
    beside = os.path.join(os.path.dirname(progress_file), os.path.basename(recorded))
    for candidate in dict.fromkeys([recorded, beside]):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise CheckpointError(f"resume_from: the run's best model {recorded} is missing (looked there and in "
                          f"{os.path.dirname(progress_file)}); put it beside {os.path.basename(progress_file)} "
                          "or start the run again")


class Phase1Trainer(HyperbolicTrainer):
    """Phase 1 (Eq. 11): trains the MoE only, with its own epochs, patience, checkpoint file and progress file
    (``<run>-phase1-last.pth``, marked phase "meta": ``resume_from`` it continues phase 1, then phase 2 runs);
    its finished output is cached (``phase1.py``)."""

    progress_phase = "meta"

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epochs = config["meta_epochs"] or self.epochs
        self.stopping_step = config["meta_stopping_step"] or self.stopping_step
        self.saved_model_file = self.saved_model_file[: -len(".pth")] + "-phase1.pth"
        self.progress_file = self.saved_model_file[: -len(".pth")] + "-last.pth"
