"""Tests for jaxconv.train.checkpoint: pytrees of arrays to a pickle-free .npz and back, atomically."""

import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv.train import checkpoint


def _tree():
    params = ({"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)}, {}, {"w": jnp.ones((3, 1), jnp.bfloat16)})
    return {"params": params, "opt_state": optax.adam(0.1).init(params), "key": jax.random.key(7)}


def test_round_trip_restores_every_leaf_with_its_dtype_and_the_metadata(tmp_path):
    path = tmp_path / "checkpoint.npz"
    tree = _tree()
    metadata = {"step": 3, "history": [{"loss": 0.5}], "config": {"name": "x"}}
    checkpoint.save(path, tree, metadata)
    restored, restored_metadata = checkpoint.load(path, _tree())
    assert restored_metadata == metadata
    assert checkpoint.read_metadata(path) == metadata
    assert jax.tree.structure(restored) == jax.tree.structure(tree)
    for leaf, expected in zip(jax.tree.leaves(restored), jax.tree.leaves(tree)):
        if jax.dtypes.issubdtype(expected.dtype, jax.dtypes.prng_key):
            np.testing.assert_array_equal(jax.random.key_data(leaf), jax.random.key_data(expected))
        else:
            assert leaf.dtype == expected.dtype
            np.testing.assert_array_equal(leaf, expected)
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def test_the_file_is_a_plain_npz_without_pickles(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, _tree(), {"step": 1})
    with np.load(path, allow_pickle=False) as archive:  # loads: nothing in it needs pickle
        header = json.loads(str(archive["__metadata__"][()]))
        assert all(archive[name].dtype != object for name in archive.files)
    assert header["format"] == checkpoint.FORMAT and header["metadata"] == {"step": 1}


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.atomic_write(path, lambda file: file.write(b"complete old file"))

    def partial_write(file):
        file.write(b"half of a new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, partial_write)
    assert path.read_bytes() == b"complete old file"
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def test_a_checkpoint_that_needs_pickle_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, __metadata__=np.array([{"format": checkpoint.FORMAT}], dtype=object))
    with pytest.raises(ValueError, match=f"{path} is not a jaxconv checkpoint"):
        checkpoint.read_metadata(path)


def test_a_folder_in_place_of_the_checkpoint_is_refused_as_damaged(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.mkdir()
    message = rf"^{path} is not a jaxconv checkpoint or is damaged \(Is a directory\)$"
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.read_metadata(path)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load(path, _tree())


def test_a_template_of_another_model_is_refused_naming_the_leaf(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, _tree(), {})
    other = _tree()
    other["params"][0]["w"] = jnp.zeros((2, 4))
    with pytest.raises(ValueError, match=r"\['params'\]\[0\]\['w'\] has shape \(2, 3\) .* expect shape \(2, 4\)"):
        checkpoint.load(path, other)
    other = _tree()
    other["params"][2]["w"] = jnp.ones((3, 1), jnp.float32)
    with pytest.raises(ValueError, match=r"dtype bfloat16, but the model and optimizer expect .* dtype float32"):
        checkpoint.load(path, other)
    with pytest.raises(ValueError, match="holds 11 arrays but the model and optimizer expect 3"):
        checkpoint.load(path, _tree()["params"])
    with pytest.raises(ValueError, match="is not a threefry2x32 PRNG key|is not a .* PRNG key"):
        checkpoint.load(path, {**_tree(), "key": jax.random.key(0, impl="rbg")})


def test_an_array_that_needs_pickle_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, {"w": jnp.zeros(2)}, {})
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["leaf_00000"] = np.array([None, None], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(checkpoint.CheckpointError, match=f"{path} is not a jaxconv checkpoint or is damaged .*pickle"):
        checkpoint.load(path, {"w": jnp.zeros(2)})


def test_damage_is_a_checkpoint_error_naming_the_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, _tree(), {"step": 1})
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])
    with pytest.raises(checkpoint.CheckpointError, match=f"{path} is not a jaxconv checkpoint or is damaged"):
        checkpoint.read_metadata(path)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(checkpoint.CheckpointError, match="holds a single array"):
        checkpoint.load(single, _tree())
    with pytest.raises(FileNotFoundError):
        checkpoint.read_metadata(tmp_path / "absent.npz")


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match=f"{path} is not a jaxconv checkpoint"):
        checkpoint.read_metadata(path)
    assert zipfile.is_zipfile(path)
