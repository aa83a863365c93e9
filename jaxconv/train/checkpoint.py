"""Pickle-free, atomic checkpoints of pytrees of arrays.

A checkpoint is one ``.npz``: the leaves of a pytree as ``leaf_00000``,
``leaf_00001``, ... (typed PRNG keys stored as their ``jax.random.key_data``)
and a JSON string, ``__metadata__``, with each leaf's shape and dtype and any
caller metadata. Nothing is pickled. Restoring needs a *template* pytree of the
same structure (e.g. freshly initialised params and optimizer state): the
leaves are unflattened into its treedef after checking that every shape and
dtype matches, so a checkpoint written with another model or optimizer is a
clear error, not a silent mix-up.

Files are written atomically: to a temporary file in the same directory, then
``os.replace``, so a crash or Ctrl-C never leaves a partial checkpoint behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "jaxconv-checkpoint"
VERSION = 1
_METADATA_KEY = "__metadata__"


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Calls ``write(file)`` on a temporary file next to ``path``, then renames it to ``path``.

    Either the old file or the complete new one is at ``path``, never a partial one.

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "hello.txt")
    >>> atomic_write(path, lambda f: f.write(b"hello"))
    >>> open(path).read()
    'hello'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _leaf_names(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def save(path: str | os.PathLike, tree: Any, metadata: dict[str, Any] | None = None) -> None:
    """Writes the leaves of ``tree`` and JSON ``metadata`` to ``path`` (an ``.npz``), atomically.

    Args:
      path: the checkpoint file.
      tree: a pytree of arrays; typed PRNG keys are allowed.
      metadata: anything ``json.dumps`` accepts.

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> tree = {"w": jnp.arange(3.0), "key": jax.random.key(0)}
    >>> save(path, tree, {"step": 7})
    >>> restored, metadata = load(path, tree)
    >>> restored["w"], metadata["step"]
    (Array([0., 1., 2.], dtype=float32), 7)
    >>> bool(jnp.all(jax.random.key_data(restored["key"]) == jax.random.key_data(tree["key"])))
    True
    """
    leaves = jax.tree.leaves(tree)
    arrays = {}
    records = []
    for i, leaf in enumerate(leaves):
        record: dict[str, Any] = {}
        if _is_key(leaf):
            record["key_impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        array = np.asarray(leaf)
        record.update(shape=list(array.shape), dtype=array.dtype.name)
        arrays[f"leaf_{i:05d}"] = array
        records.append(record)
    header = {"format": FORMAT, "version": VERSION, "leaves": records, "metadata": metadata or {}}
    arrays[_METADATA_KEY] = np.array(json.dumps(header))
    atomic_write(path, lambda file: np.savez(file, **arrays))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The caller metadata of the checkpoint at ``path``, without loading the arrays."""
    return _read_header(path)["metadata"]


def _read_header(path: str | os.PathLike) -> dict[str, Any]:
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive[_METADATA_KEY][()]))
    except (KeyError, ValueError, OSError, EOFError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a jaxconv checkpoint ({error})") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"{path} is not a version-{VERSION} jaxconv checkpoint (header {header.get('format')!r})")
    return header


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Restores the pytree saved at ``path`` into the structure of ``template``.

    Args:
      path: a checkpoint written by :func:`save`.
      template: a pytree with the same structure, leaf shapes and dtypes as the
        saved one (its values are ignored).

    Returns:
      ``(tree, metadata)``.

    Raises:
      ValueError: if the number of leaves, a shape or a dtype differs, naming the leaf.
    """
    path = os.fspath(path)
    header = _read_header(path)
    records = header["leaves"]
    template_leaves, treedef = jax.tree.flatten(template)
    names = _leaf_names(template)
    if len(records) != len(template_leaves):
        raise ValueError(
            f"{path} holds {len(records)} arrays but the model and optimizer expect {len(template_leaves)}: "
            "it was written with a different configuration"
        )
    leaves = []
    with np.load(path, allow_pickle=False) as archive:
        for i, (record, like, name) in enumerate(zip(records, template_leaves, names)):
            array = archive[f"leaf_{i:05d}"]
            is_key = _is_key(like)
            if is_key:
                expected_impl = str(jax.random.key_impl(like))
                if record.get("key_impl") != expected_impl:
                    raise ValueError(f"{path}: {name} is not a {expected_impl} PRNG key")
                like = jax.random.key_data(like)
            like_shape, like_dtype = (
                tuple(np.shape(like)),
                np.dtype(like.dtype if hasattr(like, "dtype") else type(like)),
            )
            if array.shape != like_shape or array.dtype != like_dtype:
                raise ValueError(
                    f"{path}: {name} has shape {array.shape} and dtype {array.dtype}, but the model and optimizer "
                    f"expect shape {like_shape} and dtype {like_dtype}: "
                    "the checkpoint was written with a different configuration"
                )
            if is_key:
                leaves.append(jax.random.wrap_key_data(array, impl=expected_impl))
            else:
                leaves.append(jnp.asarray(array))
    return jax.tree.unflatten(treedef, leaves), header["metadata"]
