"""Triples for the tag-graph loss L_tag (HyperLLM, Eq. 14).

Anchors are tags. A tag-tag triple is (parent, child, random tag); a tag-item
triple is (tag, item, random item); negatives that happen to be linked to the
anchor are re-drawn, as in the authors' sampler (``sampler.py``). Each epoch
walks a fresh permutation of both edge lists in ``batches_per_epoch`` slices,
so one epoch of user-item batches covers every tag edge ``passes`` times (config key
``tag_edge_passes``, default 1). The authors' ``main.py`` sizes each tag batch from
``count_nonzero()`` of the symmetric tag adjacencies, i.e. 2E / batches, so their epoch sees
each tag edge twice and their summed L_tag weighs twice ours per batch: ``tag_edge_passes: 2``
matches that (their tag-tag anchors are also only the first half of the row-sorted symmetric
pairs, a quirk not copied here: every parent->child edge is an anchor). The trainer's
epoch starts a new permutation (``begin_epoch``), whatever number of batches the
previous epoch had; ``state``/``load_state`` carry the random stream and the
position in it through a progress checkpoint, so a resumed run draws what the
uninterrupted run would have drawn.
"""
import math

import numpy as np
import torch


class _EdgeStream:
    def __init__(self, anchors, positives, neg_low, neg_high, batches_per_epoch, rng, passes=1):
        self.anchors = np.asarray(anchors, dtype=np.int64)
        self.positives = np.asarray(positives, dtype=np.int64)
        self.neg_low, self.neg_high = neg_low, neg_high
        self.keys = np.unique(self.anchors * neg_high + self.positives)
        self.passes = passes
        self.batch_size = max(1, math.ceil(passes * len(self.anchors) / batches_per_epoch))
        self.rng = rng
        self.order = np.empty(0, dtype=np.int64)
        self.cursor = 0

    def _is_linked(self, anchors, candidates):
        keys = anchors * self.neg_high + candidates
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == keys

    def begin_epoch(self):
        self.cursor = len(self.order)

    def next(self):
        if self.cursor >= len(self.order):
            # `passes` permutations back to back: an epoch's batches slice them as one list
            self.order = np.concatenate([self.rng.permutation(len(self.anchors)) for _ in range(self.passes)])
            self.cursor = 0
        take = self.order[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        anchors, positives = self.anchors[take], self.positives[take]
        negatives = self.rng.integers(self.neg_low, self.neg_high, size=len(take))
        for _ in range(10):  # re-draw negatives that are actually linked to the anchor
            clash = self._is_linked(anchors, negatives)
            if not clash.any():
                break
            negatives[clash] = self.rng.integers(self.neg_low, self.neg_high, size=int(clash.sum()))
        return anchors, positives, negatives


class TagTripleSampler:
    """Yields (anchor, positive, negative) node indices of the tag graph (tags first, then items)."""

    def __init__(self, parent, child, link_tags, link_items, n_tags, n_items, batches_per_epoch, seed, passes=1):
        self.rng = np.random.default_rng(seed)
        self.n_tags = n_tags
        self.tag_tag = _EdgeStream(parent, child, 1, n_tags, batches_per_epoch, self.rng, passes)
        self.tag_item = _EdgeStream(link_tags, link_items, 1, n_items, batches_per_epoch, self.rng, passes)

    def begin_epoch(self):
        """The next batch starts a fresh permutation of both edge lists."""
        self.tag_tag.begin_epoch()
        self.tag_item.begin_epoch()

    def state(self):
        """The random stream and both streams' positions (for a progress checkpoint)."""
        return {"rng": self.rng.bit_generator.state,
                "streams": [(s.order.copy(), s.cursor) for s in (self.tag_tag, self.tag_item)]}

    def load_state(self, state):
        self.rng.bit_generator.state = state["rng"]
        for stream, (order, cursor) in zip((self.tag_tag, self.tag_item), state["streams"]):
            stream.order, stream.cursor = np.asarray(order, dtype=np.int64), int(cursor)

    def next_batch(self, device="cpu"):
        a1, p1, n1 = self.tag_tag.next()
        a2, p2, n2 = self.tag_item.next()
        anchors = np.concatenate([a1, a2])
        positives = np.concatenate([p1, p2 + self.n_tags])
        negatives = np.concatenate([n1, n2 + self.n_tags])
        triples = torch.from_numpy(np.stack([anchors, positives, negatives]))
        if torch.device(device).type == "cuda":  # one asynchronous copy from pinned memory: no host sync
            triples = triples.pin_memory().to(device, non_blocking=True)
        else:
            triples = triples.to(device)
        return triples[0], triples[1], triples[2]
