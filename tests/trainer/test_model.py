"""The seed ResNet50, layer for layer."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from edge_signs.trainer.model import EXPECTED_PARAMS, STAGES, build_resnet50  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return build_resnet50()


def test_parameter_count(model):
    assert model.count_params() == EXPECTED_PARAMS == 23_600_006


def test_input_output(model):
    assert tuple(model.input.shape) == (None, 64, 64, 3)
    assert tuple(model.output.shape) == (None, 6)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_stage_structure(model):
    names = [layer.name for layer in model.layers]
    assert [type(layer).__name__ for layer in model.layers[1:6]] == ["ZeroPadding2D", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D"]
    assert model.get_layer("conv1").kernel_size == (7, 7) and model.get_layer("conv1").strides == (2, 2)
    for stage, ((f1, f2, f3), stride, n_identity) in enumerate(STAGES, start=2):
        blocks = sorted({n[len(f"res{stage}"):][0] for n in names if n.startswith(f"res{stage}") and n.endswith("branch2a")})
        assert blocks == list("abcdefg"[: 1 + n_identity]), f"stage {stage}"
        # only the first block of a stage has a projection shortcut, with the stage's stride
        shortcut = model.get_layer(f"res{stage}a_branch1")
        assert shortcut.strides == (stride, stride) and shortcut.filters == f3
        assert not any(n == f"res{stage}b_branch1" for n in names)
        assert model.get_layer(f"res{stage}a_branch2a").strides == (stride, stride)
        assert [model.get_layer(f"res{stage}b_branch2{c}").filters for c in "abc"] == [f1, f2, f3]
        assert model.get_layer(f"res{stage}b_branch2b").kernel_size == (3, 3)
    assert model.get_layer("avg_pool").output.shape[1:] == (1, 1, 2048)
    assert sum(type(layer).__name__ == "Add" for layer in model.layers) == 3 + 4 + 6 + 3


def test_regularization_options():
    m = build_resnet50(dropout=0.5, l2=1e-4)
    assert m.count_params() == EXPECTED_PARAMS  # neither adds parameters
    assert m.get_layer("dropout").rate == 0.5
    assert len(m.losses) > 0


def test_same_shaped_layers_start_different():
    """Each layer draws its own initial weights: an integer-seeded initializer per layer would
    make every same-shaped kernel identical."""
    m = build_resnet50(seed=0)
    for a, b in (("res4b_branch2a", "res4c_branch2a"), ("res4b_branch2b", "res4e_branch2b"), ("res3b_branch2c", "res3d_branch2c")):
        ka, kb = m.get_layer(a).kernel.numpy(), m.get_layer(b).kernel.numpy()
        assert ka.shape == kb.shape
        assert not np.allclose(ka, kb), f"{a} and {b} start identical"


def test_same_seed_builds_identical_weights():
    a, b, c = build_resnet50(seed=3), build_resnet50(seed=3), build_resnet50(seed=4)
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert not np.array_equal(wa[0], wc[0])


def test_every_layer_is_named(model):
    """Add and ReLU layers carry block names, so reports and get_layer see stable names."""
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names)
    assert model.get_layer("res3b_add").__class__.__name__ == "Add"
    assert model.get_layer("res3b_relu").__class__.__name__ == "Activation"
    assert model.get_layer("res5a_branch2b_relu").__class__.__name__ == "Activation"
    # no auto-generated names ("add_3", "activation_17") that change with build order
    assert not [n for n in names if n.split("_")[0] in ("add", "activation", "zero", "max", "flatten") and n[-1].isdigit()]
