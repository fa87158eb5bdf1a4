"""The NIN of the reference: shapes, parameter count, init statistics, Maxout, pooling."""

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ninsweep import build_model
from ninsweep.config import ModelConfig
from ninsweep.core.layers import ConvNormAct, Maxout
from ninsweep.core.model import Conv, SamePool2d, count_parameters, decayed_parameters
from ninsweep.errors import ConfigError
from ninsweep.registry import ACTIVATIONS, INITS, NORMS


def convs(model):
    return [block.conv for block in model.conv_blocks()]


# The lab4 study's cells; the open axes (every registered name) are covered cheaper below.
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "maxout"])
@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("init", ["keras", "he", "torch"])
def test_every_cell_maps_images_to_ten_logits(activation, batchnorm, init):
    torch.manual_seed(0)
    model = build_model(activation, batchnorm=batchnorm, init=init).eval()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    channels_last = model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    assert channels_last(x).shape == (2, 10)


def test_parameter_count_matches_the_reference():
    assert count_parameters(build_model("relu", batchnorm=False)) == 966_986


def test_batchnorm_follows_every_conv_including_the_last_with_keras_defaults():
    model = build_model("relu", batchnorm=True)
    blocks = list(model.conv_blocks())
    assert len(blocks) == 9
    for block in blocks:
        assert isinstance(block[1], nn.BatchNorm2d)
        assert block[1].eps == pytest.approx(1e-3)
        assert block[1].momentum == pytest.approx(0.01)
        assert isinstance(block[2], nn.ReLU)
    assert blocks[-1].conv.out_channels == 10


def test_architecture_follows_table_one():
    model = build_model()
    shapes = [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs(model)]
    assert shapes == [(3, 192, 5), (192, 160, 1), (160, 96, 1),
                      (96, 192, 5), (192, 192, 1), (192, 192, 1),
                      (192, 192, 3), (192, 192, 1), (192, 10, 1)]
    dropouts = [m for m in model.layers if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == [0.5, 0.5]


def _spatial_stds(model):
    return [c.weight.std().item() for c in convs(model) if c.kernel_size[0] > 1]


def test_keras_init_uses_the_labs_fixed_stds_and_glorot_on_1x1():
    torch.manual_seed(0)
    model = build_model(init="keras")
    assert _spatial_stds(model) == pytest.approx([0.01, 0.05, 0.05], rel=0.03)
    for conv in convs(model):
        assert torch.count_nonzero(conv.bias) == 0
        if conv.kernel_size[0] == 1:
            bound = math.sqrt(6 / (conv.in_channels + conv.out_channels))
            assert conv.weight.abs().max().item() <= bound
            assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_he_init_is_normal_with_fan_out_std():
    torch.manual_seed(0)
    model = build_model(init="he")
    assert _spatial_stds(model) == pytest.approx([0.0204, 0.0204, 0.0340], rel=0.03)


def test_he_init_of_a_maxout_conv_uses_its_real_output_width():
    torch.manual_seed(0)
    model = build_model("maxout", init="he")
    first = convs(model)[0]
    assert first.out_channels == 384
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / (25 * 384)), rel=0.03)


def test_torch_init_differs_from_both_lab_schemes():
    torch.manual_seed(0)
    stds = _spatial_stds(build_model(init="torch"))
    assert stds[0] == pytest.approx(1 / math.sqrt(3 * 25 * 3), rel=0.05)  # kaiming_uniform(a=sqrt(5))


@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout_convs_are_pieces_times_wider(pieces):
    model = build_model("maxout", batchnorm=True, maxout_pieces=pieces)
    widths = [(c.out_channels, b.out_channels) for b, c in zip(model.conv_blocks(), convs(model))]
    assert all(conv == pieces * out for conv, out in widths)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_maxout_takes_the_max_of_adjacent_channel_groups():
    x = torch.arange(2 * 6 * 1 * 1, dtype=torch.float32).view(2, 6, 1, 1)
    x[0, 0] = 100  # group 0 of sample 0
    out = Maxout(3)(x)
    assert out.shape == (2, 2, 1, 1)
    assert out[0, :, 0, 0].tolist() == [100, 5]
    assert out[1, :, 0, 0].tolist() == [8, 11]


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_same_pooling_equals_tensorflow_padding_after(kind):
    x = torch.randn(2, 4, 32, 32)
    if kind == "max":
        expected = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    else:
        ones = F.pad(torch.ones_like(x), (0, 1, 0, 1))
        expected = (F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 3, 2, divisor_override=1)
                    / F.avg_pool2d(ones, 3, 2, divisor_override=1))
    assert torch.allclose(SamePool2d(kind)(x), expected, atol=1e-6)
    assert SamePool2d(kind)(x).shape == (2, 4, 16, 16)


def test_pool2_choice_and_symmetric_padding():
    avg = build_model(pool2="avg")
    pools = [m for m in avg.layers if isinstance(m, SamePool2d)]
    assert [p.kind for p in pools] == ["max", "avg"]
    symmetric = build_model(pool_padding="symmetric")
    assert isinstance(symmetric.layers[3], nn.MaxPool2d)
    assert symmetric(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("scope,expected", [("spatial", 3), ("conv", 9)])
def test_weight_decay_reaches_the_chosen_kernels_only(scope, expected):
    model = build_model(batchnorm=True)
    decayed, others = decayed_parameters(model, scope)
    assert len(decayed) == expected
    assert all(p.dim() == 4 for p in decayed)
    if scope == "spatial":
        assert sorted(p.shape[-1] for p in decayed) == [3, 5, 5]
    assert len(decayed) + len(others) == len(list(model.parameters()))
    everything, none = decayed_parameters(model, "all")
    assert none == [] and len(everything) == len(list(model.parameters()))


def test_activation_options_reach_the_modules():
    leaky = build_model("leaky_relu", leaky_relu_slope=0.2)
    assert next(m for m in leaky.modules() if isinstance(m, nn.LeakyReLU)).negative_slope == 0.2
    elu = build_model("elu", elu_alpha=0.5)
    assert next(m for m in elu.modules() if isinstance(m, nn.ELU)).alpha == 0.5


@pytest.mark.parametrize("kwargs,key", [
    (dict(activation="relu6"), "model.activation"),
    (dict(init="xavier"), "model.init"),
    (dict(pool2="min"), "model.pool2"),
    (dict(maxout_pieces=1), "model.maxout_pieces"),
    (dict(dropout=1.5), "model.dropout"),
    (dict(batchnorm="yes"), "batchnorm"),
    (dict(width=2), "width"),
])
def test_bad_model_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        build_model(**kwargs)


def test_config_object_builds_the_same_model():
    torch.manual_seed(1)
    a = build_model("elu", batchnorm=True, init="he")
    torch.manual_seed(1)
    b = build_model(config=ModelConfig(activation="elu", batchnorm=True, init="he"))
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert isinstance(list(a.conv_blocks())[0], ConvNormAct)


def _train_one_step(model):
    """One SGD step on a tiny batch: the loss is finite and every parameter gets a gradient."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    loss = F.cross_entropy(model.train()(images), labels)
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_registered_activation_builds_and_trains_a_step(activation):
    torch.manual_seed(0)
    model = build_model(activation, batchnorm=True, init="he")
    _train_one_step(model)
    built = {type(m) for m in model.modules()}
    expected = type(ACTIVATIONS[activation].build(ModelConfig(activation=activation))())
    assert expected in built


@pytest.mark.parametrize("norm", sorted(NORMS))
def test_every_registered_norm_builds_and_trains_a_step(norm):
    torch.manual_seed(0)
    model = build_model("relu", norm=norm, norm_groups=32)
    _train_one_step(model)
    norms = [block[1] for block in model.conv_blocks() if len(block) == 3]
    if norm == "none":
        assert norms == []
        return
    assert len(norms) == 9
    if norm == "group":
        # 192 -> 32 groups; 160 -> 32; 96 -> 32; the 10-wide class layer -> 10 groups.
        assert [n.num_groups for n in norms] == [32, 32, 32, 32, 32, 32, 32, 32, 10]
    if norm == "layer":
        assert all(isinstance(n, nn.GroupNorm) and n.num_groups == 1 for n in norms)


def test_batchnorm_and_norm_batch_are_one_model_and_contradictions_are_refused():
    assert ModelConfig(batchnorm=True) == ModelConfig(norm="batch")
    with pytest.raises(ConfigError, match=r"^model\.norm: 'group' contradicts batchnorm: true"):
        build_model("relu", batchnorm=True, norm="group")
    with pytest.raises(ConfigError, match=r"^model\.norm: unknown value 'weight'"):
        build_model("relu", norm="weight")


@pytest.mark.parametrize("init", sorted(INITS))
def test_every_registered_init_builds_and_trains_a_step(init):
    torch.manual_seed(0)
    model = build_model("relu", init=init)
    _train_one_step(model)


@pytest.mark.parametrize("init, std_of", [
    ("xavier_normal", lambda c, k: math.sqrt(2 / (k * k * (c.in_channels + c.out_channels)))),
    ("kaiming_fan_in", lambda c, k: math.sqrt(2 / (k * k * c.in_channels))),
    ("kaiming_fan_out", lambda c, k: math.sqrt(2 / (k * k * c.out_channels))),
])
def test_new_init_schemes_give_their_documented_std_on_every_conv(init, std_of):
    torch.manual_seed(0)
    for conv in convs(build_model(init=init)):
        k = conv.kernel_size[0]
        assert conv.weight.std().item() == pytest.approx(std_of(conv, k), rel=0.1)
        assert torch.count_nonzero(conv.bias) == 0


def test_orthogonal_init_gives_orthonormal_rows_or_columns():
    torch.manual_seed(0)
    for conv in convs(build_model(init="orthogonal")):
        w = conv.weight.flatten(1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-4)


def test_registry_names_and_labels_need_no_model():
    """config, space and analysis check names and label configs from the registry alone (that
    they import no torch for it is tests/test_layers.py's rule)."""
    from ninsweep.analysis import config_label
    from ninsweep.config import _registry_names

    assert config_label("maxout", True, "he", {"model.norm": "group"}) == "Maxout+GN+WI"
    assert len(_registry_names()) == 4


def test_every_registered_entry_reads_settings_that_exist():
    for entries in (ACTIVATIONS, NORMS):
        for entry in entries.values():
            assert all(hasattr(ModelConfig(), key) for key in entry.options)
    for name, entry in ACTIVATIONS.items():
        assert entry.pieces is None or hasattr(ModelConfig(), entry.pieces), name
    for entry in INITS.values():
        assert all(hasattr(Conv(1, 1), key) for key in entry.options)


def test_activation_parameters_are_model_fields_and_reach_the_modules():
    model = build_model("prelu", prelu_init=0.1)
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    assert len(prelus) == 9 and all(p.weight.item() == pytest.approx(0.1) for p in prelus)
    for spec in ACTIVATIONS.values():
        for option in spec.options:
            assert hasattr(ModelConfig(), option)


def _model_digest(model):
    """sha256 of the module tree's repr and every state_dict entry (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(str(model).encode())
    for name, value in model.state_dict().items():
        digest.update(f"{name}{value.dtype}{tuple(value.shape)}".encode())
        digest.update(value.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# Digests of models built with torch.manual_seed(0) by the code before layers took types
# (main at 795a84c, torch 2.14 on CPU): refactors of layers/model/registry keep every
# parameter, init draw and module bit for bit. They depend on the CPU RNG's stream, so a
# torch release that changes it changes them too. orthogonal is left out: its QR is LAPACK's,
# which differs in the last bits between builds.
REFERENCE_DIGESTS = [
    (dict(activation='relu', batchnorm=True, init='he'), "2db2e0bf697ff284"),
    (dict(activation='leaky_relu', batchnorm=True, init='he'), "4ff37095f77dbf64"),
    (dict(activation='elu', batchnorm=True, init='he'), "2fe71488b30bdd00"),
    (dict(activation='maxout', batchnorm=True, init='he'), "1fa77c833d471ce9"),
    (dict(activation='gelu', batchnorm=True, init='he'), "65b06dc5258f8101"),
    (dict(activation='silu', batchnorm=True, init='he'), "393802cac6212de4"),
    (dict(activation='mish', batchnorm=True, init='he'), "23bd86368be4cf90"),
    (dict(activation='selu', batchnorm=True, init='he'), "c8a3ea4873d1c644"),
    (dict(activation='tanh', batchnorm=True, init='he'), "e1a884cc470a2bb7"),
    (dict(activation='prelu', batchnorm=True, init='he'), "3db9de3e278747e6"),
    (dict(activation='hardswish', batchnorm=True, init='he'), "e19545d01661d545"),
    (dict(activation='relu', init='keras', norm='none'), "ee522553cc65ad35"),
    (dict(activation='relu', init='keras', norm='batch'), "b6246fbcdea8f7ea"),
    (dict(activation='relu', init='keras', norm='group'), "15714ef510eddcf4"),
    (dict(activation='relu', init='keras', norm='layer'), "bef9f96c9b8de31a"),
    (dict(activation='relu', init='he'), "dda8502951b4f967"),
    (dict(activation='relu', init='torch'), "e90bc07fd47c6600"),
    (dict(activation='relu', init='xavier_uniform'), "a9b00dffa2b90282"),
    (dict(activation='relu', init='xavier_normal'), "66f89c86433c031d"),
    (dict(activation='relu', init='kaiming_fan_in'), "9b97989c5d05e8e9"),
    (dict(activation='relu', init='kaiming_fan_out'), "cee38dbc68716e42"),
    (dict(activation='maxout', init='keras', maxout_pieces=3, norm='group', norm_groups=32), "f5f27de6cf29d4f3"),
    (dict(activation='leaky_relu', batchnorm=True, bn_eps=1e-05, bn_momentum=0.1, init='kaiming_fan_out', leaky_relu_slope=0.2), "ec39c6cec52157ca"),
    (dict(activation='prelu', dropout=0.3, init='he', norm='layer', num_classes=7, pool2='avg', pool_padding='symmetric', prelu_init=0.1), "1f9080e35ce1e9a6"),
]


@pytest.mark.parametrize("options, expected", REFERENCE_DIGESTS)
def test_seeded_models_are_bit_identical_to_the_reference_build(options, expected):
    torch.manual_seed(0)
    assert _model_digest(build_model(**options)) == expected
