"""The trainer of SeLLaRec (and of the CTR baselines it is compared with): RecBole's training loop through the
plugin's ``HyperbolicTrainer`` (RecBole's learners such as ``adam`` pass through; per-epoch timings; checkpoints
loaded on torch >= 2.6; progress checkpoints), plus

* GAUC and UAUC (``losses.grouped_auc``) next to RecBole's AUC and LogLoss after every evaluation: RecBole's own
  GAUC is a ranking metric and cannot be mixed with the value metrics of labeled (pointwise) evaluation, so the
  scores, labels and users of the evaluated rows are kept and grouped here;
* ``llm_train_rows``: at most that many training rows per epoch (the first batches of RecBole's shuffled loader,
  so a different random subset each epoch); 0 or unset = every row. The LLM steps are CPU-sized this way.
"""
import math

import torch

from recbole_hyperllm.model.sella.losses import grouped_auc
from recbole_hyperllm.trainer import HyperbolicTrainer


class FirstBatches:
    """The first ``n`` batches of a RecBole data loader (iteration and ``len`` only)."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n
        self.shuffle = getattr(loader, "shuffle", False)
        self.sampler = getattr(loader, "sampler", None)

    def __len__(self):
        return min(self.n, len(self.loader))

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            if index >= self.n:
                break
            yield batch


class CTRTrainer(HyperbolicTrainer):
    """``HyperbolicTrainer`` with grouped AUCs after each evaluation and a cap on rows per epoch."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self._grouped = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        rows = self.config["llm_train_rows"] or 0
        if rows > 0:
            train_data = FirstBatches(train_data, math.ceil(rows / self.config["train_batch_size"]))
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    def _neg_sample_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._neg_sample_batch_eval(batched_data)
        if self._grouped is not None:
            self._grouped.append((interaction[self.config["USER_ID_FIELD"]].cpu(), scores.detach().float().cpu(),
                                  interaction[self.config["LABEL_FIELD"]].cpu()))
        return interaction, scores, positive_u, positive_i

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        self._grouped = []
        try:
            result = super().evaluate(eval_data, load_best_model=load_best_model, model_file=model_file,
                                      show_progress=show_progress)
            grouped = self._grouped
        finally:
            self._grouped = None
        if result is not None and grouped:
            users, scores, labels = (torch.cat(column).numpy() for column in zip(*grouped))
            places = self.config["metric_decimal_place"] or 4
            result.update({k: round(v, places) for k, v in grouped_auc(users, scores, labels).items()})
        return result
