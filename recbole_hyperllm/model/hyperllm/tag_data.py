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


def map_tokens(dataset, field, tokens):
    """Internal ids of ``tokens`` (-1 where the dataset has no such token)."""
    table = dataset.field2token_id[field]
    return np.array([table.get(t, -1) for t in tokens], dtype=np.int64)


def load_tag_graph(dataset):
    """(parent, child, tag_of_link, item_of_link, n_tags); tags are numbered from 1 (0 = padding)."""
    tag_path, tags = _read(dataset, "tag", STRUCTURAL_FILES["tag"])
    vocab = {token: i + 1 for i, token in enumerate(dict.fromkeys(tags["tag_id"]))}
    edge_path, edges = _read(dataset, "tagedge", STRUCTURAL_FILES["tagedge"])
    link_path, links = _read(dataset, "itemtag", STRUCTURAL_FILES["itemtag"])

    def tag_index(path, column, tokens):
        index = np.array([vocab.get(t, -1) for t in tokens], dtype=np.int64)
        if (index < 0).any():
            line = int(np.flatnonzero(index < 0)[0]) + 2
            raise AtomicFileError(f"{path}, line {line}: {column} {tokens[line - 2]!r} is not a tag of {tag_path}; "
                             "add it there or remove the row")
        return index

    parent = tag_index(edge_path, "parent_tag_id", edges["parent_tag_id"])
    child = tag_index(edge_path, "child_tag_id", edges["child_tag_id"])
    link_tags = tag_index(link_path, "tag_id", links["tag_id"])
    link_items = map_tokens(dataset, dataset.iid_field, links["item_id"])
    known = link_items > 0  # items without interactions have no ID embedding: their links are skipped
    if not known.any():
        raise AtomicFileError(f"{link_path}: no item_id matches an item of the interactions. {HOW_TO_MAKE}")
    return parent, child, link_tags[known], link_items[known], len(vocab) + 1


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
