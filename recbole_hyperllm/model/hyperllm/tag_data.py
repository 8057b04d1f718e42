"""HyperLLM's side inputs as RecBole atomic files, and what each variant needs.

| suffix     | columns                                               | made by |
|------------|-------------------------------------------------------|---------|
| `tag`      | tag_id:token, tag_name:token, tag_level:float         | LLM tags (dataset_tools) |
| `tagedge`  | parent_tag_id:token, child_tag_id:token               | LLM edges, parent level < child level |
| `itemtag`  | item_id:token, tag_id:token                           | which items carry each tag |
| `useremb`  | user_id:token, user_emb:float_seq                     | encoded user summaries (Eq. 7) |
| `itememb`  | item_id:token, item_emb:float_seq                     | encoded item summaries (Eq. 7) |
| `userinit` | user_id:token, user_init:float_seq                    | a given phase-1 output (tangent vectors) |
| `iteminit` | item_id:token, item_init:float_seq                    | a given phase-1 output (tangent vectors) |

They are loaded by RecBole itself (``additional_feat_suffix`` + ``load_col``);
this module turns the loaded features into index arrays and tensors.
"""
import numpy as np
import torch

STRUCTURAL_FILES = {
    "tag": ["tag_id", "tag_name", "tag_level"],
    "tagedge": ["parent_tag_id", "child_tag_id"],
    "itemtag": ["item_id", "tag_id"],
}
SEMANTIC_FILES = {"useremb": ["user_id", "user_emb"], "itememb": ["item_id", "item_emb"]}
GIVEN_PHASE1_FILES = {"userinit": ["user_id", "user_init"], "iteminit": ["item_id", "item_init"]}
HOW_TO_MAKE = (
    "Make it with `python -m dataset_tools.from_official SRC OUT --dataset NAME` (authors' release) "
    "or the dataset_tools pipeline, or switch the variant off (e.g. --variant=Base)."
)


def _tokens(dataset, field, ids):
    return dataset.field2id_token[field][np.asarray(ids)]


def _feature(dataset, suffix):
    feat = getattr(dataset, f"{suffix}_feat", None)
    if feat is None:
        raise ValueError(
            f"HyperLLM needs the atomic file {dataset.dataset_name}.{suffix} but it was not loaded "
            f"(add '{suffix}' to additional_feat_suffix and load_col). {HOW_TO_MAKE}"
        )
    return feat


def load_tag_graph(dataset):
    """(parent, child, tag_of_link, item_of_link, n_tags) in RecBole's internal ids (0 = padding)."""
    tag_ids = _feature(dataset, "tag")["tag_id"].numpy()
    vocab = {token: int(i) for i, token in enumerate(dataset.field2id_token["tag_id"])}
    edges = _feature(dataset, "tagedge")
    links = _feature(dataset, "itemtag")

    def to_tag_index(field, ids, suffix):
        tokens = _tokens(dataset, field, ids)
        index = np.array([vocab.get(t, -1) for t in tokens], dtype=np.int64)
        if (index < 0).any():
            bad = tokens[index < 0][:5].tolist()
            raise ValueError(
                f"{dataset.dataset_name}.{suffix}: column {field} names tags that are not in "
                f"{dataset.dataset_name}.tag: {bad}. Add them to the .tag file or drop those rows."
            )
        return index

    parent = to_tag_index("parent_tag_id", edges["parent_tag_id"].numpy(), "tagedge")
    child = to_tag_index("child_tag_id", edges["child_tag_id"].numpy(), "tagedge")
    link_tags = links["tag_id"].numpy()  # same field as the .tag file: same ids
    link_items = links["item_id"].numpy()
    if len(tag_ids) == 0 or len(link_tags) == 0:
        raise ValueError(f"{dataset.dataset_name}: the tag files are empty. {HOW_TO_MAKE}")
    return parent, child, link_tags.astype(np.int64), link_items.astype(np.int64), len(vocab)


def load_node_vectors(dataset, suffix, id_field, value_field, n_rows):
    """(n_rows, dim) float tensor from a float_seq atomic feature; every real id must be present."""
    feat = _feature(dataset, suffix)
    ids = feat[id_field].long()
    values = feat[value_field].float()
    if values.dim() != 2 or values.size(1) == 0:
        raise ValueError(f"{dataset.dataset_name}.{suffix}: column {value_field} must be a non-empty float_seq")
    table = torch.zeros(n_rows, values.size(1))
    table[ids] = values
    present = torch.zeros(n_rows, dtype=torch.bool)
    present[ids] = True
    missing = (~present[1:]).nonzero().flatten() + 1
    if len(missing):
        examples = _tokens(dataset, id_field, missing[:5].numpy()).tolist()
        raise ValueError(
            f"{dataset.dataset_name}.{suffix}: {len(missing)} ids of {id_field} have no row, e.g. {examples}. "
            f"Every user/item of the interactions needs a vector. {HOW_TO_MAKE}"
        )
    if not torch.isfinite(values).all():
        raise ValueError(f"{dataset.dataset_name}.{suffix}: column {value_field} contains NaN or inf")
    return table
