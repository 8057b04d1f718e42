"""The semantic inputs every framework reads: ``NAME.useremb`` / ``NAME.itememb`` (encoded LLM summaries,
HyperLLM's Eq. 7), so that a comparison of frameworks gives all of them the same knowledge."""
from recbole_hyperllm.atomic import AtomicFileError
from recbole_hyperllm.model.hyperllm import tag_data

SEMANTIC_FILES = tag_data.SEMANTIC_FILES


def semantic_vectors(model, dataset):
    """(users, items): float tensors (n_users, D) and (n_items, D) of the dataset's semantic embeddings,
    row = RecBole's internal id; both files must have the same width D."""
    users = tag_data.load_node_vectors(dataset, "useremb", model.USER_ID, "user_emb", model.n_users)
    items = tag_data.load_node_vectors(dataset, "itememb", model.ITEM_ID, "item_emb", model.n_items)
    if users.size(1) != items.size(1):
        raise AtomicFileError(
            f"{tag_data.atomic_path(dataset, 'useremb')} has {users.size(1)} dimensions but "
            f"{tag_data.atomic_path(dataset, 'itememb')} has {items.size(1)}: encode users and items with the "
            "same encoder")
    return users, items
