"""Every model taken from d2l has as many parameters as d2l's own definition, at the book's
input size and settings.

How the d2l counts were obtained: the PyTorch definitions of d2l 1.0 (the chapters' code and
d2l/torch.py) were rebuilt in a script outside this repository; their lazy layers were
materialized by one forward pass of a 1-channel batch at the book's input size for that model
(28, 96 or 224 px, as each row says), with 10 classes, and the parameters counted. The
language models read The Time Machine's 28-character vocabulary (one-hot inputs) with d2l's
32 hidden units. Each row names the section, the book's settings and d2l's class."""

from __future__ import annotations

import pytest

from registry import MODELS, count_parameters, get_model, list_models

D2L_FAMILIES = ("linear", "cnn", "rnn", "vit")

# (registered name, the book's settings as litzoo hyperparameters, d2l's count, the parameters
# litzoo adds on purpose, documented in the model's docstring)
D2L_COUNTS = [
    # 3.5: LinearRegression, LazyLinear(1) on the 2 features of the synthetic data.
    ("linear_regression", {}, 3, 0),
    # 4.5: SoftmaxRegression, Flatten + LazyLinear(10) on 28x28 images.
    ("softmax_regression", {}, 7_850, 0),
    # 5.2: MLP, one hidden layer of 256 ReLU units, 28x28 images.
    ("mlp", {}, 203_530, 0),
    # 5.6: DropoutMLP, two hidden layers of 256 units with dropout 0.5.
    ("mlp", {"hidden_sizes": [256, 256], "dropout": 0.5}, 269_322, 0),
    # 7.6: LeNet at 28 px.
    ("lenet", {"image_size": 28}, 61_706, 0),
    # 8.5: BNLeNet at 28 px.
    ("lenet_bn", {"image_size": 28}, 44_878, 0),
    # 8.1: AlexNet at 224 px.
    ("alexnet", {"image_size": 224}, 46_764_746, 0),
    # 8.2: VGG(arch=((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))) at 224 px.
    ("vgg", {"image_size": 224}, 43_093_322, 0),
    # 8.3: NiN at 224 px.
    ("nin", {}, 1_992_166, 0),
    # 8.4: GoogLeNet at 96 px.
    ("googlenet", {}, 5_977_530, 0),
    # 8.6: ResNet18 at 96 px (convolutions with biases, a plain 1x1 convolution shortcut).
    ("resnet18", {}, 11_178_378, 0),
    # 8.6: d2l's ResNet class with arch ((3, 64), (4, 128), (6, 256), (3, 512)) at 96 px.
    ("resnet34", {}, 21_290_250, 0),
    # 8.6.4: d2l's ResNet class with arch ((2, 64), (2, 128), (2, 256), (2, 512)), each
    # Residual replaced by ResNeXtBlock(num_channels, groups=16, bot_mul=0.5) (use_1x1conv and
    # strides=2 where ResNet uses them), at 96 px.
    ("resnext", {}, 943_242, 0),
    # 8.7: DenseNet(num_channels=64, growth_rate=32, arch=(4, 4, 4, 4)) at 96 px.
    ("densenet", {}, 758_226, 0),
    # 8.8: RegNetX32 (stem 32, groups=16, bot_mul=1, depths (4, 6), channels (32, 80)) at 96 px.
    ("regnetx32", {}, 179_290, 0),
    # 9.5: RNNLMScratch(RNNScratch(28, 32)): W_xh, W_hh, b_h, W_hq, b_q.
    ("rnn_scratch", {}, 2_876, 0),
    # 9.6: RNNLM(RNN(num_inputs=28, num_hiddens=32)).
    ("rnn", {}, 2_908, 0),
    # 10.2: RNNLM(GRU(num_inputs=28, num_hiddens=32)).
    ("gru", {}, 6_876, 0),
    # 10.1: RNNLM(LSTM(num_inputs=28, num_hiddens=32)).
    ("lstm", {}, 8_860, 0),
    # 10.3: RNNLM(GRU(num_inputs=28, num_hiddens=32, num_layers=2)).
    ("deep_gru", {}, 13_212, 0),
    # 11.8: ViT(96, 16, 512, 2048, 8, 2, ...): d2l's MultiHeadAttention has no biases; litzoo's
    # blocks (nn.TransformerEncoderLayer) have them, 3 x 512 in and 512 out, in each of 2 blocks.
    ("vit", {"image_size": 96, "patch_size": 16}, 6_457_866, 2 * 4 * 512),
]


@pytest.mark.parametrize(
    ("name", "settings", "d2l_count", "added"),
    D2L_COUNTS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(D2L_COUNTS)],
)
def test_parameter_count_matches_d2l(name: str, settings: dict, d2l_count: int, added: int) -> None:
    assert count_parameters(get_model(name, **settings)) == d2l_count + added


def test_every_d2l_model_has_a_count() -> None:
    """A model of this repository in a d2l family needs a row above."""
    ours = {
        name
        for family in D2L_FAMILIES
        for name in list_models(family=family)
        if MODELS.entry(name).cls.__module__.startswith("lit_modules.")
    }
    assert ours == {row[0] for row in D2L_COUNTS}
