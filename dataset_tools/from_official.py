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

OUT/NAME/ is written as a hidden sibling folder first and gets its name only when every
file is written: a bad input (a damaged .npz, JSON or .pt file) ends with one line
``error: FILE: ... expected ...`` and exit status 2, and leaves an earlier OUT/NAME/ as it was.
"""
import argparse
import glob
import json
import os
import shutil
import sys

import numpy as np
import scipy.sparse as sp

from dataset_tools.common import clean_text, write_atomic_file

SPLITS = (("train", "train_matrix.npz"), ("valid", "val_matrix.npz"), ("test", "test_matrix.npz"))


class ReleaseError(ValueError):
    """A missing or unreadable release file; the message names the file and what was expected. The CLI exits 2."""


def _reason(error):
    """The first line of a loader's error, with its type (torch and numpy errors run over many lines)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:160].rstrip(": ")


def _read_json(path, expected):
    """The JSON object in ``path``; ``expected`` describes it for the error message."""
    if not os.path.isfile(path):
        raise ReleaseError(f"{path} not found (expected the authors' release layout)")
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except json.JSONDecodeError as error:
        raise ReleaseError(f"{path}, line {error.lineno}: not valid JSON ({error.msg}); expected {expected}") from None
    except (UnicodeDecodeError, OSError) as error:
        raise ReleaseError(f"{path}: cannot be read as JSON text ({_reason(error)}); expected {expected}") from None
    if not isinstance(value, dict):
        raise ReleaseError(f"{path}: holds a JSON {type(value).__name__}; expected {expected}")
    return value


def _id(value, path, expected):
    """``value`` as an integer id (the release writes ids as ints or digit strings)."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number < 0 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ReleaseError(f"{path}: {str(value)[:40]!r} is not an integer id >= 0; expected {expected}")
    return number


def _id_lists(mapping, path, expected):
    """{id: [ids]} from a JSON object of id -> list of ids."""
    result = {}
    for key, values in mapping.items():
        if not isinstance(values, list):
            raise ReleaseError(f"{path}: key {key!r} holds {type(values).__name__}, not a list; expected {expected}")
        result[_id(key, path, expected)] = [_id(v, path, expected) for v in values]
    return result


def _read_tag_json(src, name, expected):
    """One of the release's tag files, checked: keys are tag ids; in tag_to_* files values are lists of ids."""
    path = os.path.join(src, f"{name}.json")
    expected = f"a JSON object of {expected}"
    value = _read_json(path, expected)
    if name == "id_to_tag":
        if not value:
            raise ReleaseError(f"{path}: holds no tag; expected {expected}")
        for key in value:
            _id(key, path, expected)
        return value
    return _id_lists(value, path, expected)


def _load_matrix(path):
    """The users x items matrix of one split, as COO."""
    if not os.path.isfile(path):
        raise ReleaseError(f"{path} not found (expected the authors' release layout)")
    try:
        return sp.load_npz(path).tocoo()
    except Exception as error:  # zip, pickle, numpy and scipy errors alike: the file is not what it should be
        raise ReleaseError(f"{path}: not a readable sparse matrix ({_reason(error)}); expected the users x items "
                           "CSR matrix written by scipy.sparse.save_npz") from None


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
        matrix = _load_matrix(os.path.join(src, filename))
        shapes.add(matrix.shape)
        rows = sorted(zip(matrix.row.tolist(), matrix.col.tolist()))
        write_atomic_file(os.path.join(out, f"{name}.{split}.inter"), ["user_id:token", "item_id:token"], rows)
        counts[split] = len(rows)
    if len(shapes) != 1:
        raise ReleaseError(f"{src}: the three matrices have different shapes {sorted(shapes)}")
    return shapes.pop(), counts


def convert_tags(src, out, name, n_items):
    id_to_tag = _read_tag_json(src, "id_to_tag", "tag id -> tag name, e.g. {\"0\": \"skin care\"}")
    tag_to_tag = _read_tag_json(src, "tag_to_tag", "tag id -> list of child tag ids, e.g. {\"0\": [3, 4]}")
    tag_to_item = _read_tag_json(src, "tag_to_item", "tag id -> list of item ids, e.g. {\"0\": [17, 52]}")
    n_tags = max(int(k) for k in id_to_tag) + 1
    edges = sorted({(p, c) for p, cs in tag_to_tag.items() for c in cs if p != c})
    self_loops = sum(1 for p, cs in tag_to_tag.items() for c in cs if p == c)
    links = sorted({(i, t) for t, items in tag_to_item.items() for i in items})
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


def _load_vectors(path, rows):
    """The (rows, d) tensor of one released phase-1 output."""
    import torch

    expected = f"a ({rows}, d) float tensor saved with torch.save"
    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors alike: the file is not what it should be
        reason = _reason(error)
        raise ReleaseError(f"{path}: not a readable PyTorch tensor file ({reason}); expected {expected}") from None
    if not isinstance(tensor, torch.Tensor):
        raise ReleaseError(f"{path}: holds a {type(tensor).__name__}, not a tensor; expected {expected}")
    if tensor.dim() != 2 or tensor.size(0) != rows:
        raise ReleaseError(f"{path}: shape {tuple(tensor.shape)}, expected ({rows}, d)")
    return tensor


def convert_phase1(directory, out, name, prefix, shape, as_semantic=False):
    """NAME.userinit / NAME.iteminit from the released MoE outputs; with ``as_semantic`` the same vectors
    also as NAME.useremb / NAME.itememb, the input of this project's phase 1 (a stand-in for the text
    embeddings, which the release does not contain)."""
    suffixes = ("init", "emb") if as_semantic else ("init",)
    for kind, rows in (("user", shape[0]), ("item", shape[1])):
        values = _load_vectors(_phase1_file(directory, prefix, kind), rows).numpy().astype(np.float64)
        vectors = [(i, " ".join(repr(float(np.float32(v))) for v in values[i])) for i in range(rows)]
        for suffix in suffixes:
            write_atomic_file(os.path.join(out, f"{name}.{kind}{suffix}"),
                              [f"{kind}_id:token", f"{kind}_{suffix}:float_seq"], vectors)


def _copy_entry(source, target):
    """Hard-link (else copy) a file or folder tree of the old output into the new one."""
    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if os.path.isdir(source) and not os.path.islink(source):
        shutil.copytree(source, target, copy_function=link_or_copy, symlinks=True)
    elif os.path.islink(source):
        os.symlink(os.readlink(source), target)
    else:
        link_or_copy(source, target)


def publish(partial, out):
    """Give the finished folder ``partial`` the name ``out``. An existing ``out`` is replaced only now, when
    everything is written; its files that this run does not write (the user's own) are carried over."""
    if not os.path.isdir(out):
        os.rename(partial, out)
        return
    for entry in os.listdir(out):
        if not os.path.lexists(os.path.join(partial, entry)):
            _copy_entry(os.path.join(out, entry), os.path.join(partial, entry))
    parent, base = os.path.split(os.path.abspath(out))
    retired = os.path.join(parent, f".{base}.old-{os.getpid()}")
    os.rename(out, retired)
    os.rename(partial, out)
    shutil.rmtree(retired, ignore_errors=True)


def convert_release(src, out_root, name, phase1=None, phase1_prefix=None, phase1_as_semantic=False):
    """Write OUT_ROOT/NAME/ from the release in SRC; returns the statistics (raises ReleaseError).

    The files are written into the hidden sibling OUT_ROOT/.NAME.partial-PID/, renamed to NAME only when all
    are written; on any error it is removed and an existing OUT_ROOT/NAME/ is left as it was."""
    if phase1_as_semantic and not phase1:
        raise ReleaseError("phase1_as_semantic needs the phase-1 folder (--phase1 DIR)")
    out = os.path.join(out_root, name)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ReleaseError(f"{out} exists and is not a folder; move it away or pick another --dataset name")
    created_root = not os.path.isdir(out_root)
    partial = os.path.join(out_root, f".{name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)  # left by a killed run of this process id
    os.makedirs(partial)
    try:
        shape, counts = convert_split(src, partial, name)
        stats = convert_tags(src, partial, name, shape[1])
        if phase1:
            prefix = phase1_prefix or os.path.basename(os.path.normpath(src))
            convert_phase1(phase1, partial, name, prefix, shape, as_semantic=phase1_as_semantic)
        publish(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if created_root:
            try:
                os.rmdir(out_root)  # only if this run created it and left it empty
            except OSError:
                pass
        raise
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
    except (ReleaseError, OSError) as error:  # OSError: e.g. OUT not writable or the disk full
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
