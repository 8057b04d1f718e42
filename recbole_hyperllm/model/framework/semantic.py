"""The semantic inputs every framework reads: ``NAME.useremb`` / ``NAME.itememb`` (encoded LLM summaries,
HyperLLM's Eq. 7), so that a comparison of frameworks gives all of them the same knowledge."""
from recbole_hyperllm.atomic import AtomicFileError
from recbole_hyperllm.model.framework.base import Framework
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


class SemanticFramework(Framework):
    """A framework that reads the semantic embeddings as they are: buffers ``user_semantic`` (n_users, D) and
    ``item_semantic`` (n_items, D), and the declaration that it needs their files (KAR, RLMRec)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        users, items = semantic_vectors(self, dataset)
        self.register_buffer("user_semantic", users.to(self.device))
        self.register_buffer("item_semantic", items.to(self.device))
        self.semantic_dim = users.size(1)

    @classmethod
    def side_files(cls, config):
        return dict(SEMANTIC_FILES)
