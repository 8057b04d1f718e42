"""SeLLa-Rec's losses and the per-user AUC.

* ``yes_no_logit``: the score of steps 1 and 3 (TALLRec; SeLLa-Rec Sec. 3.1/3.3): at the prompt's last position,
  z = l_Yes - l_No, so that P(Yes) = softmax(l_Yes, l_No)_Yes = sigmoid(z); trained with the binary cross-entropy
  of sigmoid(z) against the label (the answer token's cross-entropy restricted to {Yes, No}).
* ``alignment_loss``: step 2's semantic alignment (SeLLa-Rec Sec. 3.2; public code: a contrastive loss with
  tau = 0.2 between the LLM item embedding and trans_2(GELU(trans_1(e_i)))), InfoNCE over the items of a batch:
  L = -1/|B| sum_i log( exp(cos(p_i, z_i)/tau) / sum_{j in B} exp(cos(p_i, z_j)/tau) ),
  p_i = projector(e_i) (MF item embedding), z_i = LLM item embedding; the other items of the batch are the
  negatives.
* ``grouped_auc``: RecBole's GAUC (per-user AUC weighted by the user's positives) and the paper's UAUC (per-user
  AUC averaged over users), over the users with both labels.
"""
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata


def yes_no_logit(logits, yes_id, no_id):
    """z = l_Yes - l_No of the last position's logits (B, V) (or (B, 1, V)); P(Yes) = sigmoid(z)."""
    last = logits[:, -1] if logits.dim() == 3 else logits
    return (last[:, yes_id] - last[:, no_id]).float()


def alignment_loss(projected, llm_embeddings, temperature):
    """InfoNCE between ``projected`` (B, H) and ``llm_embeddings`` (B, H), row i's positive is row i."""
    p = F.normalize(projected.float(), dim=-1)
    z = F.normalize(llm_embeddings.float(), dim=-1)
    logits = p @ z.t() / temperature
    return F.cross_entropy(logits, torch.arange(len(p), device=p.device))


def auc(scores, labels):
    """The probability that a positive outranks a negative (ties count half), by the rank-sum formula:
    AUC = (sum of positives' ranks - P(P+1)/2) / (P N). None without both labels."""
    labels = np.asarray(labels) > 0.5
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def grouped_auc(users, scores, labels):
    """{'gauc': sum_u P_u AUC_u / sum_u P_u (RecBole's GAUC), 'uauc': mean_u AUC_u (SeLLa-Rec's UAUC,
    CoLLM's ``uAUC``)} over the users with both a positive and a negative row (P_u: the user's positives)."""
    users, scores, labels = (np.asarray(a) for a in (users, scores, labels))
    order = np.argsort(users, kind="stable")
    users, scores, labels = users[order], scores[order], labels[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    weighted, weights, per_user = 0.0, 0, []
    for s, l in zip(np.split(scores, bounds), np.split(labels, bounds)):
        value = auc(s, l)
        if value is None:
            continue
        positives = int((l > 0.5).sum())
        weighted += positives * value
        weights += positives
        per_user.append(value)
    if not per_user:
        return {"gauc": float("nan"), "uauc": float("nan")}
    return {"gauc": weighted / weights, "uauc": float(np.mean(per_user))}
