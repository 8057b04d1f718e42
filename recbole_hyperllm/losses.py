"""Losses of HGCF and HyperLLM.

* ``margin_ranking_loss``: the hyperbolic margin ranking loss, Eq. (6) of the
  HyperLLM paper (SIGIR 2025), summed over the batch as in the authors' code.
* ``hyperbolic_infonce``: the exact contrastive loss of Eq. (16): every item of
  one view against every item of the other view, squared Lorentz distance over a
  temperature. It is computed in row chunks with the gradient formed in the same
  pass (each chunk holds whole rows, so its log-sum-exp is complete), so the
  N x N matrix never exists at once and no second pass is needed for backward.
  On the CPU the elementwise chain of a chunk (arcosh, softmax weights) runs as
  loops that ``torch.compile`` fuses (``use_fused_chain``).
"""
import warnings

import torch

from recbole_hyperllm.manifold import flip_space, sqdist_all, sqdist_pairs

__all__ = ["margin_ranking_loss", "hyperbolic_infonce", "hyperbolic_infonce_reference", "hyperbolic_infonce_in_batch"]


def margin_ranking_loss(anchor, positive, negative, margin):
    """Eq. (6): sum over triples of max(d^2(a, p) - d^2(a, n) + m, 0).

    Squared distances as in HGCF's and HyperLLM's released code. ``margin`` may be
    a float or a per-triple tensor (adaptive margins).
    """
    return torch.clamp_min(sqdist_pairs(anchor, positive) - sqdist_pairs(anchor, negative) + margin, 0.0).sum()


class _ChunkBuffers:
    """Reusable (chunk, N) work arrays: no allocation (and no page faults) per chunk. The Gram block always;
    the eager chain's two scratch arrays only once a chunk runs eagerly (the compiled chain allocates its own)."""

    def __init__(self, rows, cols, like):
        self.gram = like.new_empty(rows, cols)
        self._scratch = None

    def scratch(self, rows):
        if self._scratch is None:
            self._scratch = (torch.empty_like(self.gram), torch.empty_like(self.gram))
        return self._scratch[0][:rows], self._scratch[1][:rows]


def _arcosh_terms(gram):
    """(sqrt(M^2 - 1), arcosh(M)) with M^2 - 1 clamped at 1e-12 (finite on the diagonal)."""
    root = torch.sqrt(torch.clamp_min(gram * gram - 1.0, 1e-12))
    return root, torch.log(gram + root)


def _softmax_weights_eager(gram, scratch, tau):
    """The elementwise chain of Eq. (16) on a Gram chunk M, in the two ``scratch`` arrays (no allocation per chunk).

    Returns (W, row_sum, min_sq) with A = arcosh(M), E = exp(-(A^2 - min_j A^2) / tau), row_sum = sum_j E and
    W = E * A / sqrt(M^2 - 1).
    """
    ratio, work = scratch
    torch.mul(gram, gram, out=ratio).sub_(1.0).clamp_min_(1e-12).sqrt_()  # sqrt(M^2 - 1)
    torch.add(gram, ratio, out=work).log_()                             # A = arcosh(M)
    torch.div(work, ratio, out=ratio)                                    # A / sqrt(M^2 - 1)
    work.mul_(work)                                                      # A^2 = d^2
    min_sq = work.amin(dim=1)
    work.sub_(min_sq.unsqueeze(1)).mul_(-1.0 / tau).exp_()              # exp(logit - max logit)
    return ratio.mul_(work), work.sum(dim=1), min_sq


def _softmax_weights_math(gram, tau):
    """The same chain as one expression, for ``torch.compile`` to fuse into a few loops over the chunk."""
    root, arc = _arcosh_terms(gram)
    sq = arc * arc
    min_sq = sq.amin(dim=1)
    scaled = torch.exp((sq - min_sq.unsqueeze(1)) * (-1.0 / tau))
    return scaled * (arc / root), scaled.sum(dim=1), min_sq


# Eq. (16)'s chain compiled by torch.compile (Inductor generates fused C++ loops on the CPU), used for full chunks
# of at least FUSED_MIN_ITEMS columns on the CPU; None until first use, False when compiling failed (eager then).
FUSED_MIN_ITEMS = 2048
_fused_weights = None


def fused_weights_function():
    """The compiled chain, or None when torch.compile is unavailable here (no C++ compiler): eager is used."""
    global _fused_weights
    if _fused_weights is None:
        try:
            _fused_weights = torch.compile(_softmax_weights_math)  # a second size compiles one dynamic kernel
        except Exception as error:  # noqa: BLE001 - any failure to build the compiler means: stay eager
            warnings.warn(f"torch.compile unavailable ({error}); Eq. 16 runs its eager chain", RuntimeWarning)
            _fused_weights = False
    return _fused_weights or None


def _weights(gram, buffers, tau, fused):
    """(W, row_sum, min_sq) of a Gram chunk: compiled when ``fused`` (falling back to eager, with one warning,
    if compiling fails), else the in-place eager chain."""
    if fused:
        function = fused_weights_function()
        if function is not None:
            try:
                return function(gram, tau)
            except Exception as error:  # noqa: BLE001 - e.g. the C++ build fails on first call
                global _fused_weights
                _fused_weights = False
                warnings.warn(f"torch.compile failed on Eq. 16 ({type(error).__name__}: {error}); "
                              "running its eager chain", RuntimeWarning)
    return _softmax_weights_eager(gram, buffers.scratch(gram.size(0)), tau)


class _ExactInfoNCE(torch.autograd.Function):
    """Eq. (16) over rows [first, stop) of h1, each against all of h2, in row chunks.

    With M = -<h1_i, h2_j>_L, A = arcosh(M), logits = -A^2 / tau and P = softmax_j:
    loss_i = log sum_j exp(-A_ij^2 / tau) + A_ii^2 / tau, and
    dL/dM_ij = (P_ij - [i == j]) * (-2 / tau) * A_ij / sqrt(M_ij^2 - 1).
    Per chunk: the Gram block (one matmul), the softmax weights W (E * A / sqrt(M^2 - 1), see
    ``_softmax_weights_eager``), the two gradient matmuls W h2J and W^T h1J scaled by -2 / (tau row_sum);
    the log-sum-exp and the diagonal (positive-pair) terms once for all rows after the loop.
    """

    @staticmethod
    def forward(ctx, h1, h2, tau, chunk_size, first, stop, fused):
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        h2_flipped = flip_space(h2)
        buffers = _ChunkBuffers(max(1, min(chunk_size, stop - first)), h1.size(0), h1)
        row_sum, min_sq, diag_gram = (h1.new_empty(stop - first) for _ in range(3))
        grad_h1 = torch.zeros_like(h1) if want_grad else None
        grad_h2 = torch.zeros_like(h2) if want_grad else None
        for start in range(first, stop, chunk_size):
            end = min(start + chunk_size, stop)
            gram = torch.matmul(h1[start:end], h2_flipped.t(), out=buffers.gram[:end - start])  # M
            diag_gram[start - first:end - first] = torch.diagonal(gram, offset=start)
            full_chunk = fused and end - start == chunk_size  # a partial chunk would compile a second shape
            weights, sums, mins = _weights(gram, buffers, tau, full_chunk)
            row_sum[start - first:end - first] = sums
            min_sq[start - first:end - first] = mins
            if want_grad:
                scale = ((-2.0 / tau) / sums).unsqueeze(1)
                torch.matmul(weights, h2_flipped, out=grad_h1[start:end]).mul_(scale)
                grad_h2.addmm_(weights.t(), flip_space(h1[start:end]) * scale)
        diag_root, diag_arc = _arcosh_terms(diag_gram)
        total = (torch.log(row_sum) - min_sq / tau + diag_arc * diag_arc / tau).sum()
        if want_grad:  # the -[i == j] part of dL/dM
            diag_weight = ((2.0 / tau) * diag_arc / diag_root).unsqueeze(1)
            grad_h1[first:stop] += diag_weight * h2_flipped[first:stop]
            grad_h2[first:stop] += diag_weight * flip_space(h1[first:stop])
        ctx.save_for_backward(grad_h1, grad_h2)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_h1, grad_h2 = ctx.saved_tensors
        # d/dh2 of x.(yJ) is xJ: grad_h2 was accumulated against h1 J already.
        return grad_h1 * grad_output, grad_h2 * grad_output, None, None, None, None, None


def use_fused_chain(points, fused=None):
    """Whether Eq. (16)'s elementwise chain goes through torch.compile: ``fused`` when given, else on the CPU
    for at least FUSED_MIN_ITEMS items (small problems would spend more on compiling than they save)."""
    if fused is not None:
        return bool(fused)
    return points.device.type == "cpu" and points.size(0) >= FUSED_MIN_ITEMS


def hyperbolic_infonce(h1, h2, tau, chunk_size=128, rows=None, fused=None):
    """Eq. (16), exact: sum_i -log softmax_j(-d^2(h1_i, h2_j) / tau)[i].

    ``h1``: item points from the user-item graph, ``h2``: the same items from the
    tag graph (row i of both is item i). Gradients flow into both views.
    ``rows`` (a slice): only those terms i, each still against every j; the sums over a partition of
    the rows (one part per process) add up to the whole loss and its gradient.
    ``fused``: run the elementwise chain compiled (see ``use_fused_chain``; None chooses).
    """
    if h1.shape != h2.shape:
        raise ValueError(f"hyperbolic_infonce needs two views of the same items, got {tuple(h1.shape)} and {tuple(h2.shape)}")
    start, stop, _ = (rows or slice(None)).indices(h1.size(0))
    return _ExactInfoNCE.apply(h1, h2, float(tau), int(chunk_size), start, stop, use_fused_chain(h1, fused))


def hyperbolic_infonce_reference(h1, h2, tau):
    """Eq. (16) written plainly with autograd (the N x N matrix at once); for tests."""
    logits = -sqdist_all(h1, h2) / tau
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).sum()


def hyperbolic_infonce_in_batch(h1, h2, tau, index):
    """Approximation of Eq. (16) over the items in ``index`` only (an option, not the paper's loss)."""
    index = torch.unique(index)
    return hyperbolic_infonce(h1[index], h2[index], tau)
