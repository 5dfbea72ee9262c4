"""model.cast_load: a bf16 model read tensor by tensor is the model transformers loads in fp32 and
converts, weight for weight, from every kind of checkpoint (one file, shards, a ``.bin``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForSequenceClassification

from model.cast_load import cast_state_dict, checkpoint_files, load_sequence_classifier
from model.classifier import FinbertClassifier

TEXTS = ["Stocks rally on strong earnings", "Shares fall after weak guidance", "inflation", "?"]


def converted_the_old_way(source: Path) -> torch.nn.Module:
    """fp32 from the file, then ``Module.to(bfloat16)``: what the worker did before model.cast_load."""
    return AutoModelForSequenceClassification.from_pretrained(source).eval().to(torch.bfloat16)


def assert_same_weights(ours: torch.nn.Module, reference: torch.nn.Module) -> None:
    ours_state, reference_state = ours.state_dict(), reference.state_dict()
    assert ours_state.keys() == reference_state.keys()
    for name, tensor in reference_state.items():
        assert ours_state[name].dtype == tensor.dtype, name
        assert torch.equal(ours_state[name], tensor), name


def resaved(tiny_model_dir: Path, target: Path, **save_options) -> Path:
    """The tiny model saved again into ``target`` with ``save_options``, tokenizer files beside."""
    shutil.copytree(tiny_model_dir, target)
    for weights in [*target.glob("*.safetensors"), *target.glob("*.bin"), *target.glob("*.index.json")]:
        weights.unlink()
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).save_pretrained(target, **save_options)
    return target


@pytest.fixture(scope="module")
def sharded_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resaved(tiny_model_dir, tmp_path_factory.mktemp("sharded") / "model", max_shard_size="100KB")


@pytest.fixture(scope="module")
def pickled_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a ``pytorch_model.bin`` only (transformers 5 saves safetensors whatever it is told)."""
    target = tmp_path_factory.mktemp("pickled") / "model"
    shutil.copytree(tiny_model_dir, target)
    (target / "model.safetensors").unlink()
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    torch.save(model.state_dict(), target / "pytorch_model.bin")
    return target


def test_the_cast_model_has_the_weights_of_the_converted_one(tiny_model_dir: Path) -> None:
    config = AutoConfig.from_pretrained(tiny_model_dir)
    ours = load_sequence_classifier(str(tiny_model_dir), config, "bfloat16", local_only=True)
    assert ours is not None
    assert_same_weights(ours, converted_the_old_way(tiny_model_dir))


def test_a_sharded_checkpoint_is_read_shard_by_shard(sharded_model_dir: Path) -> None:
    files = checkpoint_files(str(sharded_model_dir), local_only=True)
    assert files is not None and len(files) > 1
    config = AutoConfig.from_pretrained(sharded_model_dir)
    ours = load_sequence_classifier(str(sharded_model_dir), config, "bfloat16", local_only=True)
    assert ours is not None
    assert_same_weights(ours, converted_the_old_way(sharded_model_dir))


def test_a_checkpoint_without_safetensors_is_left_to_transformers(pickled_model_dir: Path) -> None:
    assert checkpoint_files(str(pickled_model_dir), local_only=True) is None
    config = AutoConfig.from_pretrained(pickled_model_dir)
    assert load_sequence_classifier(str(pickled_model_dir), config, "bfloat16", local_only=True) is None


@pytest.mark.parametrize("checkpoint", ["tiny_model_dir", "sharded_model_dir", "pickled_model_dir"])
def test_the_bf16_classifier_reads_as_the_converted_model_does(checkpoint: str, request) -> None:
    source: Path = request.getfixturevalue(checkpoint)
    classifier = FinbertClassifier.load(str(source), precision="bf16", batch_size=4)
    assert_same_weights(classifier.engine.model, converted_the_old_way(source))
    assert classifier.model_version.endswith("+bf16")
    assert len(classifier.classify(TEXTS)) == len(TEXTS)


def test_only_floating_tensors_are_cast(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    save_file({"weight": torch.tensor([0.1, -2.5]), "ids": torch.arange(3, dtype=torch.int64)}, str(weights))
    state = cast_state_dict([weights], torch.bfloat16)
    assert state["weight"].dtype == torch.bfloat16
    assert torch.equal(state["weight"], torch.tensor([0.1, -2.5]).to(torch.bfloat16))
    assert state["ids"].dtype == torch.int64 and state["ids"].tolist() == [0, 1, 2]
