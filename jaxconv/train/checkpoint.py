"""Pickle-free, atomic checkpoints of pytrees of arrays.

A checkpoint is one ``.npz``: the leaves of a pytree as ``leaf_00000``,
``leaf_00001``, ... (typed PRNG keys stored as their ``jax.random.key_data``)
and a JSON string, ``__metadata__``, with each leaf's shape and dtype and any
caller metadata. Nothing is pickled. Restoring needs a *template* pytree of the
same structure (e.g. freshly initialised params and optimizer state): the
leaves are unflattened into its treedef after checking that every shape and
dtype matches, so a checkpoint written with another model or optimizer is a
clear error, not a silent mix-up. A damaged file (truncated, flipped bytes,
an edited header) is a :class:`CheckpointError` naming the file and the damage.
Leaves of NumPy-foreign dtypes (bfloat16, float8) are stored as unsigned
integers of the same width and viewed back.

Files are written atomically: to a temporary file in the same directory, then
``os.replace``, so a crash or Ctrl-C never leaves a partial checkpoint behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "jaxconv-checkpoint"
VERSION = 1
_METADATA_KEY = "__metadata__"
# What reading a damaged archive raises: a bad zip structure or CRC, a bad .npy header, a missing member, cut bytes.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError)


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: damaged, not a jaxconv checkpoint, or written by another model."""


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> None:
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
    arrays: dict[str, Any] = {}
    records = []
    for i, leaf in enumerate(jax.tree.leaves(tree)):
        record: dict[str, Any] = {}
        if _is_key(leaf):
            record["key_impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        array = np.asarray(leaf)
        record.update(shape=list(array.shape), dtype=array.dtype.name)
        if array.dtype.kind == "V":  # bfloat16, float8...: .npy would store raw void records
            array = array.view(f"u{array.dtype.itemsize}")
        arrays[f"leaf_{i:05d}"] = array
        records.append(record)
    header = {"format": FORMAT, "version": VERSION, "leaves": records, "metadata": metadata or {}}
    arrays[_METADATA_KEY] = np.array(json.dumps(header))
    atomic_write(path, lambda file: np.savez(file, **arrays))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The caller metadata of the checkpoint at ``path``, without loading the arrays."""
    with _archive(path) as archive:
        return _header(path, archive)["metadata"]


@contextlib.contextmanager
def _archive(path: str | os.PathLike) -> Iterator[Any]:
    """The open ``.npz``; whatever fails to read in it becomes a :class:`CheckpointError` naming ``path``."""
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} is not a jaxconv checkpoint: it holds a single array, not an .npz")
        with archive:
            yield archive
    except (CheckpointError, FileNotFoundError):
        raise
    except _READ_ERRORS as error:  # OSError included: a folder, or a file that cannot be read, in its place
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise CheckpointError(f"{path} is not a jaxconv checkpoint or is damaged ({reason})") from None


def _header(path: str | os.PathLike, archive: Any) -> dict[str, Any]:
    """The archive's JSON header, checked field by field."""
    if _METADATA_KEY not in archive.files:
        raise CheckpointError(f"{path} is not a jaxconv checkpoint: it has no {_METADATA_KEY} entry")
    try:
        header = json.loads(str(archive[_METADATA_KEY][()]))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is damaged: its header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is damaged: its header is a JSON {type(header).__name__}, not an object")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is not a version-{VERSION} jaxconv checkpoint "
            f"(header format {header.get('format')!r}, version {header.get('version')!r})"
        )
    records, metadata = header.get("leaves"), header.get("metadata")
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise CheckpointError(f"{path} is damaged: its header's 'leaves' is not a list of objects")
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path} is damaged: its header's 'metadata' is not a JSON object")
    for i, record in enumerate(records):
        shape, dtype = record.get("shape"), record.get("dtype")
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
            raise CheckpointError(f"{path} is damaged: leaf {i} has no valid shape in the header ({shape!r})")
        try:
            jnp.dtype(dtype)
        except TypeError:
            raise CheckpointError(f"{path} is damaged: leaf {i} has no valid dtype in the header ({dtype!r})") from None
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
      CheckpointError: a ``ValueError`` naming the file, if it is damaged or not a
        checkpoint, or the leaf, if the number of leaves, a shape or a dtype differs from the template's.
    """
    path = os.fspath(path)
    template_leaves, treedef = jax.tree.flatten(template)
    with _archive(path) as archive:
        header = _header(path, archive)
        records = header["leaves"]
        if len(records) != len(template_leaves):
            raise CheckpointError(
                f"{path} holds {len(records)} arrays but the model and optimizer expect {len(template_leaves)}: "
                "it was written with a different configuration"
            )
        leaves = [
            _restore_leaf(path, archive, i, record, like, name)
            for i, (record, like, name) in enumerate(zip(records, template_leaves, _leaf_names(template)))
        ]
    return jax.tree.unflatten(treedef, leaves), header["metadata"]


def _restore_leaf(path: str, archive: Any, i: int, record: dict[str, Any], like: Any, name: str) -> Any:
    """Leaf ``i``, checked against its header record (damage) and its template ``like`` (another configuration)."""
    key_impl = None
    if _is_key(like):
        key_impl = str(jax.random.key_impl(like))
        if record.get("key_impl") != key_impl:
            raise CheckpointError(f"{path}: {name} is not a {key_impl} PRNG key")
        like = jax.random.key_data(like)
    shape, dtype = tuple(record["shape"]), jnp.dtype(record["dtype"])
    like_shape, like_dtype = tuple(np.shape(like)), jnp.dtype(like.dtype if hasattr(like, "dtype") else type(like))
    if shape != like_shape or dtype != like_dtype:
        raise CheckpointError(
            f"{path}: {name} has shape {shape} and dtype {dtype}, but the model and optimizer "
            f"expect shape {like_shape} and dtype {like_dtype}: "
            "the checkpoint was written with a different configuration"
        )
    array = archive[f"leaf_{i:05d}"]
    if dtype.kind == "V" and array.dtype == np.dtype(f"u{dtype.itemsize}"):
        array = array.view(dtype)
    if array.shape != shape or array.dtype != dtype:
        raise CheckpointError(
            f"{path} is damaged: {name} holds shape {array.shape} and dtype {array.dtype}, "
            f"its header says shape {shape} and dtype {dtype}"
        )
    return jnp.asarray(array) if key_impl is None else jax.random.wrap_key_data(array, impl=key_impl)
