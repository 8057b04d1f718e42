"""Convert the HyperLLM authors' release layout into RecBole atomic files.

    python -m dataset_tools.from_official SRC OUT --dataset NAME [--phase1 DIR]

SRC holds train/val/test_matrix.npz (users x items CSR), id_to_tag.json,
tag_to_tag.json (parent -> children) and tag_to_item.json (tag -> items), as in
github Qin-lab-code/HyperLLM ``data/<name>/``. OUT/NAME/ receives

* NAME.train.inter, NAME.valid.inter, NAME.test.inter  (the exact split; RecBole
  ``benchmark_filename: [train, valid, test]``), tokens = the matrices' row and
  column indices, so ids map back exactly;
* NAME.tag, NAME.tagedge, NAME.itemtag  (the tag graph);
* with --phase1 DIR: NAME.userinit, NAME.iteminit from DIR/<name>_user_*.pt and
  DIR/<name>_item_*.pt (the MoE outputs of the authors' phase 1);
* with --phase1-as-semantic also NAME.useremb, NAME.itememb holding the same vectors: the
  input of this project's phase 1 (``semantic_init: moe``) in place of the text embeddings,
  which the release does not contain.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
import scipy.sparse as sp

from dataset_tools.common import clean_text, write_atomic_file

SPLITS = (("train", "train_matrix.npz"), ("valid", "val_matrix.npz"), ("test", "test_matrix.npz"))


class ReleaseError(ValueError):
    pass


def _read_json(path):
    if not os.path.isfile(path):
        raise ReleaseError(f"{path} not found (expected the authors' release layout)")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def tag_levels(n_tags, tag_of_link):
    """Level 1-3 of each tag by how many items carry it: the third of tags with most items is level 1.

    The release keeps no levels, and its merged parent -> child graph has cycles (in the Beauty
    release every tag with an edge has a parent too), so depth in that graph is undefined;
    frequency is the proxy for broad -> specific. Tags without items are level 3."""
    counts = np.bincount(np.asarray(tag_of_link, dtype=np.int64), minlength=n_tags)
    order = np.argsort(-counts, kind="stable")
    level = np.empty(n_tags, dtype=np.int64)
    level[order] = 1 + (np.arange(n_tags) * 3) // max(n_tags, 1)
    return level


def convert_split(src, out, name):
    shapes = set()
    counts = {}
    for split, filename in SPLITS:
        path = os.path.join(src, filename)
        if not os.path.isfile(path):
            raise ReleaseError(f"{path} not found (expected the authors' release layout)")
        matrix = sp.load_npz(path).tocoo()
        shapes.add(matrix.shape)
        rows = sorted(zip(matrix.row.tolist(), matrix.col.tolist()))
        write_atomic_file(os.path.join(out, f"{name}.{split}.inter"), ["user_id:token", "item_id:token"], rows)
        counts[split] = len(rows)
    if len(shapes) != 1:
        raise ReleaseError(f"{src}: the three matrices have different shapes {sorted(shapes)}")
    return shapes.pop(), counts


def convert_tags(src, out, name, n_items):
    id_to_tag = _read_json(os.path.join(src, "id_to_tag.json"))
    tag_to_tag = _read_json(os.path.join(src, "tag_to_tag.json"))
    tag_to_item = _read_json(os.path.join(src, "tag_to_item.json"))
    n_tags = max(int(k) for k in id_to_tag) + 1
    edges = sorted({(int(p), int(c)) for p, cs in tag_to_tag.items() for c in cs if int(p) != int(c)})
    self_loops = sum(1 for p, cs in tag_to_tag.items() for c in cs if int(p) == int(c))
    links = sorted({(int(i), int(t)) for t, items in tag_to_item.items() for i in items})
    for tag in [t for e in edges for t in e] + [t for _, t in links]:
        if str(tag) not in id_to_tag:
            raise ReleaseError(f"{src}: tag {tag} is used in an edge but missing from id_to_tag.json")
    if links and max(i for i, _ in links) >= n_items:
        raise ReleaseError(f"{src}/tag_to_item.json: item ids go beyond the {n_items} matrix columns")
    level = tag_levels(n_tags, [t for _, t in links])
    tags = sorted((int(k), clean_text(v)) for k, v in id_to_tag.items())
    write_atomic_file(os.path.join(out, f"{name}.tag"), ["tag_id:token", "tag_name:token", "tag_level:float"],
               [(k, v, int(level[k])) for k, v in tags])
    write_atomic_file(os.path.join(out, f"{name}.tagedge"), ["parent_tag_id:token", "child_tag_id:token"], edges)
    write_atomic_file(os.path.join(out, f"{name}.itemtag"), ["item_id:token", "tag_id:token"], links)
    return {"tags": len(tags), "tag_tag": len(edges), "tag_item": len(links), "dropped_self_edges": self_loops}


def _phase1_file(directory, prefix, kind):
    matches = sorted(glob.glob(os.path.join(directory, f"{prefix}_{kind}_*.pt")))
    if len(matches) != 1:
        raise ReleaseError(f"{directory}: expected exactly one {prefix}_{kind}_*.pt, found {matches or 'none'}")
    return matches[0]


def convert_phase1(directory, out, name, prefix, shape, as_semantic=False):
    """NAME.userinit / NAME.iteminit from the released MoE outputs; with ``as_semantic`` the same vectors
    also as NAME.useremb / NAME.itememb, the input of this project's phase 1 (a stand-in for the text
    embeddings, which the release does not contain)."""
    import torch

    suffixes = ("init", "emb") if as_semantic else ("init",)
    for kind, rows in (("user", shape[0]), ("item", shape[1])):
        path = _phase1_file(directory, prefix, kind)
        tensor = torch.load(path, map_location="cpu", weights_only=True)
        if tensor.dim() != 2 or tensor.size(0) != rows:
            raise ReleaseError(f"{path}: shape {tuple(tensor.shape)}, expected ({rows}, d)")
        values = tensor.numpy().astype(np.float64)
        vectors = [(i, " ".join(repr(float(np.float32(v))) for v in values[i])) for i in range(rows)]
        for suffix in suffixes:
            write_atomic_file(os.path.join(out, f"{name}.{kind}{suffix}"),
                              [f"{kind}_id:token", f"{kind}_{suffix}:float_seq"], vectors)


def convert_release(src, out_root, name, phase1=None, phase1_prefix=None, phase1_as_semantic=False):
    """Write OUT_ROOT/NAME/ from the release in SRC; returns the statistics (raises ReleaseError)."""
    if phase1_as_semantic and not phase1:
        raise ReleaseError("phase1_as_semantic needs the phase-1 folder (--phase1 DIR)")
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    shape, counts = convert_split(src, out, name)
    stats = convert_tags(src, out, name, shape[1])
    if phase1:
        prefix = phase1_prefix or os.path.basename(os.path.normpath(src))
        convert_phase1(phase1, out, name, prefix, shape, as_semantic=phase1_as_semantic)
    return {"out": out, "users": shape[0], "items": shape[1], **counts, **stats}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="folder with the authors' matrices and tag JSON files")
    parser.add_argument("out", help="data_path of RecBole; OUT/NAME/ is written")
    parser.add_argument("--dataset", required=True, help="RecBole dataset name (file prefix)")
    parser.add_argument("--phase1", default=None, help="folder with <prefix>_user_*.pt and <prefix>_item_*.pt")
    parser.add_argument("--phase1-prefix", default=None, help="file prefix in --phase1 (default: SRC's folder name)")
    parser.add_argument("--phase1-as-semantic", action="store_true",
                        help="also write the phase-1 vectors as NAME.useremb/NAME.itememb, the input of this "
                             "project's phase 1 (semantic_init: moe), for lack of the text embeddings")
    args = parser.parse_args(argv)
    try:
        stats = convert_release(args.src, args.out, args.dataset, args.phase1, args.phase1_prefix,
                                args.phase1_as_semantic)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
