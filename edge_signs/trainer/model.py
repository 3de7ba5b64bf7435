"""The seed's ResNet50 (deeplearning.ai "Residual Networks"), layer for layer.

    zero-pad 3 -> conv 7x7/2, 64 -> BN -> ReLU -> max-pool 3x3/2
    stage 2: conv block [64, 64, 256], s=1  + 2 identity blocks
    stage 3: conv block [128, 128, 512], s=2 + 3 identity blocks
    stage 4: conv block [256, 256, 1024], s=2 + 5 identity blocks
    stage 5: conv block [512, 512, 2048], s=2 + 2 identity blocks
    average pool 2x2 -> flatten -> (dropout) -> dense 6, softmax

At 64x64x3 that is 23,600,006 parameters. Layer names follow the course
("res2a_branch2a", "bn3b_branch2c", ...), so stages can be found by name.

Also here: the recipe's optimizer and loss (compile_model), freezing stages, and the one
check that a .keras file is a trained SIGNS classifier (quantize, evaluate, --init).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.config import Recipe
from edge_signs.errors import EdgeSignsError
from edge_signs.trainer import keras
from edge_signs.trainer.fused import FusedAdam, FusedAdamW, FusedBatchNormalization

# (filters, stride of the conv block, number of identity blocks) per stage
STAGES = (
    ((64, 64, 256), 1, 2),
    ((128, 128, 512), 2, 3),
    ((256, 256, 1024), 2, 5),
    ((512, 512, 2048), 2, 2),
)
EXPECTED_PARAMS = 23_600_006


def _layers_kwargs(l2: float):
    # No per-layer initializer seed: in Keras 3 an integer-seeded initializer draws the
    # same values on every call, so same-shaped layers would start identical. Each layer
    # draws its own Glorot-uniform kernel from the global RNG, which the run seeds once.
    return {"kernel_regularizer": keras.regularizers.L2(l2)} if l2 > 0 else {}


def batch_norm(momentum: float = 0.99, *, fused: bool = False):
    """name -> the batch norm layer over channels. ``fused``: trained by TensorFlow's fused kernel (fused.py);
    the weights and inference are the same either way."""
    layer = FusedBatchNormalization if fused else keras.layers.BatchNormalization
    return lambda name: layer(axis=3, momentum=momentum, name=name)


def _main_path(x, f: int, filters, stage: int, block: str, stride: int, l2: float, norm):
    """1x1 (stride ``stride``) -> fxf 'same' -> 1x1, each followed by batch norm, ReLU between."""
    L = keras.layers
    f1, f2, f3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    kw = _layers_kwargs(l2)
    x = L.Conv2D(f1, 1, strides=stride, padding="valid", name=conv + "2a", **kw)(x)
    x = norm(bn + "2a")(x)
    x = L.Activation("relu", name=conv + "2a_relu")(x)
    x = L.Conv2D(f2, f, strides=1, padding="same", name=conv + "2b", **kw)(x)
    x = norm(bn + "2b")(x)
    x = L.Activation("relu", name=conv + "2b_relu")(x)
    x = L.Conv2D(f3, 1, strides=1, padding="valid", name=conv + "2c", **kw)(x)
    return norm(bn + "2c")(x)


def _merge(main, shortcut, stage: int, block: str):
    """main + shortcut, then ReLU; named like the block's other layers ("res3b_add", "res3b_relu")."""
    x = keras.layers.Add(name=f"res{stage}{block}_add")([main, shortcut])
    return keras.layers.Activation("relu", name=f"res{stage}{block}_relu")(x)


def identity_block(x, f: int, filters, stage: int, block: str, *, l2=0.0, norm=None):
    """The main path, with the input added before the last ReLU. ``norm``: a batch_norm() (default: Keras', momentum 0.99)."""
    return _merge(_main_path(x, f, filters, stage, block, 1, l2, norm or batch_norm()), x, stage, block)


def convolutional_block(x, f: int, filters, stage: int, block: str, s: int, *, l2=0.0, norm=None):
    """The main path with stride s on its first 1x1, and a 1x1/s conv + batch norm on the shortcut."""
    norm = norm or batch_norm()
    main = _main_path(x, f, filters, stage, block, s, l2, norm)
    shortcut = keras.layers.Conv2D(filters[2], 1, strides=s, padding="valid", name=f"res{stage}{block}_branch1", **_layers_kwargs(l2))(x)
    shortcut = norm(f"bn{stage}{block}_branch1")(shortcut)
    return _merge(main, shortcut, stage, block)


def build_resnet50(
    *,
    input_shape=(config.IMAGE_SIZE, config.IMAGE_SIZE, config.CHANNELS),
    num_classes: int = config.NUM_CLASSES,
    dropout: float = 0.0,
    l2: float = 0.0,
    bn_momentum: float = 0.99,
    fused_bn: bool = False,
    seed: int | None = None,
):
    """Build (not compile) the classifier. Its output is float32 softmax even under mixed precision.

    ``fused_bn``: batch norms trained by TensorFlow's fused kernel, for a training run; a model
    to save or convert is built without it (the same weights, Keras' own layer class).

    ``seed``: when given, the global RNG is seeded first (``keras.utils.set_random_seed``),
    so one seed always builds the same initial weights; a training run seeds once itself
    and passes None.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    L = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    x = L.ZeroPadding2D((3, 3), name="conv1_pad")(inputs)
    x = L.Conv2D(64, 7, strides=2, name="conv1", **_layers_kwargs(l2))(x)
    norm = batch_norm(bn_momentum, fused=fused_bn)
    x = norm("bn_conv1")(x)
    x = L.Activation("relu", name="conv1_relu")(x)
    x = L.MaxPooling2D(3, strides=2, name="pool1")(x)
    kw = {"l2": l2, "norm": norm}
    for stage, (filters, stride, n_identity) in enumerate(STAGES, start=2):
        x = convolutional_block(x, 3, filters, stage, "a", stride, **kw)
        for i in range(n_identity):
            x = identity_block(x, 3, filters, stage, "bcdefg"[i], **kw)
    x = L.AveragePooling2D(2, name="avg_pool")(x)
    x = L.Flatten(name="flatten")(x)
    if dropout > 0:
        x = L.Dropout(dropout, name="dropout")(x)
    # float32 logits/softmax: mixed precision must not compute the probabilities in float16.
    outputs = L.Dense(
        num_classes,
        activation="softmax",
        dtype="float32",
        name="fc" + str(num_classes),
        **_layers_kwargs(l2),
    )(x)
    return keras.Model(inputs, outputs, name="ResNet50")


def compile_model(model, recipe: Recipe, steps_per_epoch: int, *, jit_compile: bool | str = "auto", fused: bool = True):
    """Optimizer, schedule and loss of the recipe. ``jit_compile``: Keras' XLA switch ("auto": where every layer supports it);
    ``fused``: Adam's update by TensorFlow's one-pass kernel (fused.py), else by Keras' own operations."""
    lr = recipe.learning_rate
    if recipe.schedule == "cosine":
        total = max(1, recipe.epochs * steps_per_epoch)
        warmup = min(total - 1, recipe.warmup_epochs * steps_per_epoch)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 10 if warmup else lr,
            decay_steps=total - warmup,
            alpha=0.01,
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    elif recipe.schedule != "constant":
        raise EdgeSignsError(f"schedule '{recipe.schedule}': unknown (expected {' or '.join(config.SCHEDULES)})")
    if recipe.optimizer == "adamw":
        optimizer = (FusedAdamW if fused else keras.optimizers.AdamW)(learning_rate=lr, weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "adam":
        optimizer = (FusedAdam if fused else keras.optimizers.Adam)(learning_rate=lr)
    else:
        raise EdgeSignsError(f"optimizer '{recipe.optimizer}': unknown (expected {' or '.join(config.OPTIMIZERS)})")
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        # A metric object and an optimizer built here, not lazily inside the first step: a variable made
        # while tf.function traces makes it trace the whole train step twice (about 45 s more per run on a 2-core CPU).
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
    model.optimizer.build(model.trainable_variables)
    return model


def nonfinite_layers(model) -> list[str]:
    """Names of the layers holding a NaN or infinite weight (a diverged run), in model order."""
    bad = []
    for layer in model.layers:
        if any(not np.isfinite(np.asarray(w)).all() for w in layer.get_weights() if np.issubdtype(np.asarray(w).dtype, np.floating)):
            bad.append(layer.name)
    return bad


def stage_of(layer_name: str) -> int | None:
    """1 for the stem (conv1 ... pool1), 2-5 for the residual stages, None for the head."""
    if layer_name.startswith(("conv1", "bn_conv1", "pool1")):
        return 1
    for prefix in ("res", "bn"):
        if layer_name.startswith(prefix) and layer_name[len(prefix):len(prefix) + 1].isdigit():
            return int(layer_name[len(prefix)])
    return None


def freeze_stages(model, stages: int) -> list[str]:
    """Keep the first ``stages`` stages as they are (their batch norms in inference mode); the names frozen."""
    frozen = []
    for layer in model.layers:
        stage = stage_of(layer.name)
        layer.trainable = not (stage is not None and stage <= stages)
        if not layer.trainable and layer.weights:
            frozen.append(layer.name)
    return frozen


def load_keras_classifier(path: str | os.PathLike, option: str = ""):
    """A trained SIGNS classifier from a .keras file, or one line saying what the file is instead.

    ``option``: the flag that named the file (``--init``), put before its path in messages.
    """
    path = Path(path)
    name = f"{option} {path}" if option else str(path)
    if not path.is_file():
        raise EdgeSignsError(f"{name}: model file not found (expected model.keras from 'edge-signs train')")
    if path.suffix != ".keras":
        raise EdgeSignsError(f"{name}: not a Keras model (expected model.keras from 'edge-signs train'; a .tflite file cannot be trained or converted again)")
    if not zipfile.is_zipfile(path):  # Keras would call it "file not found"
        raise EdgeSignsError(f"{name}: unreadable Keras model (not a .keras zip archive; expected model.keras from 'edge-signs train')")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged or foreign archive
        raise EdgeSignsError(f"{name}: unreadable Keras model ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    _check_signs_shapes(model, name)
    bad = nonfinite_layers(model)
    if bad:
        raise EdgeSignsError(f"{name}: NaN or infinite weights in {len(bad)} layer(s) ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
                             f"a diverged training run; retrain it (lower --learning-rate)")
    return model


def _check_signs_shapes(model, name: str) -> None:
    """One image of the configured size in, one probability per SIGNS class out."""
    expected_in = (config.IMAGE_SIZE, config.IMAGE_SIZE, config.CHANNELS)
    inputs = [tuple(t.shape[1:]) for t in model.inputs]
    if inputs != [expected_in]:
        given = "x".join(map(str, inputs[0])) if len(inputs) == 1 else f"{len(inputs)} inputs shaped {inputs}"
        raise EdgeSignsError(f"{name}: takes {given} input, expected {'x'.join(map(str, expected_in))}: not a SIGNS classifier")
    outputs = [tuple(t.shape[1:]) for t in model.outputs]
    if outputs != [(config.NUM_CLASSES,)]:
        given = f"{outputs[0][0]} classes" if len(outputs) == 1 and len(outputs[0]) == 1 else f"outputs shaped {outputs}"
        raise EdgeSignsError(f"{name}: predicts {given}, expected {config.NUM_CLASSES} (labels {', '.join(config.LABELS)}): not a SIGNS classifier")


def load_init(path, **build_kwargs):
    """A fresh classifier (``build_kwargs`` as for build_resnet50) holding the weights of a trained model file.

    Weights are matched by layer name and shape, and every layer of this ResNet50 must
    find its own: a SIGNS classifier of another architecture is refused in one line.
    """
    source = load_keras_classifier(path, "--init")
    model = build_resnet50(**build_kwargs)
    theirs = {layer.name: layer for layer in source.layers}
    unmatched = []
    for layer in model.layers:
        mine = layer.get_weights()
        if not mine:
            continue
        other = theirs.get(layer.name)
        weights = other.get_weights() if other is not None else []
        if [w.shape for w in weights] != [w.shape for w in mine]:
            unmatched.append(layer.name)
            continue
        layer.set_weights(weights)
    if unmatched:
        raise EdgeSignsError(f"--init {path}: not this toolkit's ResNet50 ({len(unmatched)} layer(s) missing or shaped differently, "
                             f"e.g. {', '.join(unmatched[:3])}); --init takes a model.keras from 'edge-signs train'")
    return model
