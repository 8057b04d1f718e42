"""HyperLLM's side inputs: RecBole atomic files next to the interactions.

| suffix     | columns                                               | made by |
|------------|-------------------------------------------------------|---------|
| `tag`      | tag_id:token, tag_name:token, tag_level:float         | LLM tags (dataset_tools) |
| `tagedge`  | parent_tag_id:token, child_tag_id:token               | LLM edges, parent -> child |
| `itemtag`  | item_id:token, tag_id:token                           | which items carry each tag |
| `useremb`  | user_id:token, user_emb:float_seq                     | encoded user summaries (Eq. 7) |
| `itememb`  | item_id:token, item_emb:float_seq                     | encoded item summaries (Eq. 7) |
| `userinit` | user_id:token, user_init:float_seq                    | a given phase-1 output (tangent vectors) |
| `iteminit` | item_id:token, item_init:float_seq                    | a given phase-1 output (tangent vectors) |

RecBole 1.2.1 loads ``additional_feat_suffix`` files but does not remap token
fields shared between them (``tag_id`` in .tag and .itemtag) and fails to build
such features, so these files are read here, in RecBole's atomic format, and
user/item tokens are mapped with the dataset's own ``field2token_id``.
"""
import logging
import os

import numpy as np
import torch

from recbole_hyperllm.atomic import AtomicFileError, read_columns

STRUCTURAL_FILES = {
    "tag": ["tag_id", "tag_level"],
    "tagedge": ["parent_tag_id", "child_tag_id"],
    "itemtag": ["item_id", "tag_id"],
}
SEMANTIC_FILES = {"useremb": ["user_id", "user_emb"], "itememb": ["item_id", "item_emb"]}
GIVEN_PHASE1_FILES = {"userinit": ["user_id", "user_init"], "iteminit": ["item_id", "item_init"]}
HOW_TO_MAKE = (
    "Make it with `python -m dataset_tools.from_official SRC OUT --dataset NAME` (authors' release) "
    "or the dataset_tools pipeline (`python -m dataset_tools prepare NAME`), or run without that part "
    "(the backbone alone, e.g. --model=HGCF, or HyperLLM's --variant=Base/Structural/Semantic)."
)


def atomic_path(dataset, suffix):
    return os.path.join(dataset.dataset_path, f"{dataset.dataset_name}.{suffix}")


def _read(dataset, suffix, columns):
    path = atomic_path(dataset, suffix)
    if not os.path.isfile(path):
        raise AtomicFileError(f"{path} not found: this model needs it (columns {columns}). {HOW_TO_MAKE}")
    return path, read_columns(path, columns)


# Below this share of .itemtag rows naming an item of the interactions, the run warns (0 is refused).
MIN_MATCHED_LINK_SHARE = 0.5


def warn(message):
    logging.getLogger().warning(message)


def tag_vocabulary(path, tags):
    """{tag token: index from 1}; a tag listed twice with the same level is dropped with a warning, with a
    different level refused (which level holds is not knowable)."""
    vocab, level_of, first_line, repeated = {}, {}, {}, 0
    for line, (token, level) in enumerate(zip(tags["tag_id"], tags["tag_level"]), start=2):
        if token in vocab:
            if level != level_of[token]:
                raise AtomicFileError(f"{path}, line {line}: tag_id {token!r} has tag_level {level}, but {level_of[token]} "
                                      f"on line {first_line[token]}; keep one row per tag")
            repeated += 1
            continue
        vocab[token], level_of[token], first_line[token] = len(vocab) + 1, level, line
    if repeated:
        warn(f"{path}: {repeated} repeated tag rows dropped (same tag_id and level)")
    return vocab


def unique_pairs(path, what, first, second, drop_self_pairs=False):
    """(first, second) with repeated pairs (and self-pairs, for edges) dropped, each kind counted in a warning:
    a repeated row would weigh a pair twice in the tag loss, a self-loop is a positive at distance 0."""
    keep = np.ones(len(first), dtype=bool)
    if drop_self_pairs:
        self_pairs = first == second
        if self_pairs.any():
            warn(f"{path}: {int(self_pairs.sum())} {what} from a tag to itself dropped")
        keep &= ~self_pairs
    _, unique_rows = np.unique(np.stack([first, second], axis=1), axis=0, return_index=True)
    seen = np.zeros(len(first), dtype=bool)
    seen[unique_rows] = True
    repeated = keep & ~seen
    if repeated.any():
        warn(f"{path}: {int(repeated.sum())} repeated {what} dropped")
    keep &= seen
    return first[keep], second[keep]


def matched_links(path, link_tags, link_items):
    """The links whose item is an item of the interactions: none is an error, fewer than
    MIN_MATCHED_LINK_SHARE a warning with the counts (items without interactions have no ID embedding)."""
    known = link_items > 0
    if not known.any():
        raise AtomicFileError(f"{path}: none of its {len(known)} item_id values is an item of the interactions; "
                              f"the files are of different datasets or use other item ids. {HOW_TO_MAKE}")
    if known.mean() < MIN_MATCHED_LINK_SHARE:
        warn(f"{path}: only {int(known.sum())} of {len(known)} rows name an item of the interactions; the others "
             "are skipped (are the item ids those of this dataset?)")
    return link_tags[known], link_items[known]


def map_tokens(dataset, field, tokens):
    """Internal ids of ``tokens`` (-1 where the dataset has no such token)."""
    table = dataset.field2token_id[field]
    return np.array([table.get(t, -1) for t in tokens], dtype=np.int64)


def load_tag_graph(dataset):
    """(parent, child, tag_of_link, item_of_link, n_tags); tags are numbered from 1 (0 = padding)."""
    tag_path, tags = _read(dataset, "tag", STRUCTURAL_FILES["tag"])
    vocab = tag_vocabulary(tag_path, tags)
    edge_path, edges = _read(dataset, "tagedge", STRUCTURAL_FILES["tagedge"])
    link_path, links = _read(dataset, "itemtag", STRUCTURAL_FILES["itemtag"])

    def tag_index(path, column, tokens):
        index = np.array([vocab.get(t, -1) for t in tokens], dtype=np.int64)
        if (index < 0).any():
            line = int(np.flatnonzero(index < 0)[0]) + 2
            raise AtomicFileError(f"{path}, line {line}: {column} {tokens[line - 2]!r} is not a tag of {tag_path}; "
                             "add it there or remove the row")
        return index

    parent, child = unique_pairs(edge_path, "tag edges", tag_index(edge_path, "parent_tag_id", edges["parent_tag_id"]),
                                 tag_index(edge_path, "child_tag_id", edges["child_tag_id"]), drop_self_pairs=True)
    link_tags, link_items = matched_links(link_path, tag_index(link_path, "tag_id", links["tag_id"]),
                                          map_tokens(dataset, dataset.iid_field, links["item_id"]))
    link_tags, link_items = unique_pairs(link_path, "item-tag links", link_tags, link_items)
    return parent, child, link_tags, link_items, len(vocab) + 1


def load_node_vectors(dataset, suffix, id_field, value_field, n_rows):
    """(n_rows, dim) float tensor from a float_seq atomic file; every user/item needs a row."""
    path, columns = _read(dataset, suffix, [id_field, value_field])
    ids = map_tokens(dataset, id_field, columns[id_field])
    values = columns[value_field]
    if values.ndim != 2 or values.shape[1] == 0:
        raise AtomicFileError(f"{path}: column {value_field} must be a non-empty float_seq")
    if not np.isfinite(values).all():
        line = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0]) + 2
        raise AtomicFileError(f"{path}, line {line}: {value_field} contains NaN or inf")
    keep = ids > 0
    first_row = np.full(n_rows, -1)
    for row in np.flatnonzero(keep):
        if first_row[ids[row]] >= 0:
            raise AtomicFileError(f"{path}, line {row + 2}: {id_field} {columns[id_field][row]!r} already has a row on "
                                  f"line {first_row[ids[row]] + 2}; keep one row per {id_field}")
        first_row[ids[row]] = row
    table = torch.zeros(n_rows, values.shape[1])
    table[torch.from_numpy(ids[keep])] = torch.from_numpy(values[keep])
    present = np.zeros(n_rows, dtype=bool)
    present[ids[keep]] = True
    missing = np.flatnonzero(~present[1:]) + 1
    if len(missing):
        examples = dataset.field2id_token[id_field][missing[:5]].tolist()
        raise AtomicFileError(f"{path}: {len(missing)} values of {id_field} have no row, e.g. {examples}; "
                         f"every user/item of the interactions needs a vector. {HOW_TO_MAKE}")
    return table


def require_width(path, vectors, embedding_size):
    """A given phase-1 output holds tangent vectors as wide as the model's points (time coordinate included)."""
    if vectors.size(1) != embedding_size:
        raise AtomicFileError(f"{path}: rows hold {vectors.size(1)} values, but embedding_size {embedding_size} needs "
                              f"{embedding_size}; run with --embedding_size={vectors.size(1)} or remake the file")
