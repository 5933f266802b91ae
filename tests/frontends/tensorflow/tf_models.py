"""Small seeded Keras models for the TensorFlow frontend's tests, and the ways to write them: a SavedModel
directory, a ``.keras`` file, a frozen GraphDef ``.pb``. Everything here needs TensorFlow (imported inside)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0


def cnn() -> Any:
    import keras
    from keras import layers

    x = keras.Input((16, 16, 3), name="image")
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = layers.MaxPooling2D(2)(y)
    y = layers.Conv2D(12, 3, strides=2)(y)
    y = layers.BatchNormalization()(y)
    y = layers.GlobalAveragePooling2D()(y)
    return keras.Model(x, layers.Dense(5, activation="softmax", name="probs")(y))


def mlp() -> Any:
    import keras
    from keras import layers

    x = keras.Input((12,), name="features")
    y = layers.Dense(32, activation="relu")(x)
    y = layers.Dense(16, activation="tanh")(y)
    return keras.Model(x, layers.Dense(4, name="scores")(y))


def transformer_block() -> Any:
    """Self-attention + layer norm + GELU MLP, with residuals: a transformer encoder layer in small."""
    import keras
    from keras import layers

    x = keras.Input((6, 16), name="tokens")
    a = layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    h = layers.LayerNormalization(epsilon=1e-5)(layers.Add()([x, a]))
    m = layers.Dense(32, activation="gelu")(h)
    m = layers.Dense(16)(m)
    return keras.Model(x, layers.LayerNormalization(epsilon=1e-5, name="encoded")(layers.Add()([h, m])))


MODELS: dict[str, Callable[[], Any]] = {"cnn": cnn, "mlp": mlp, "transformer": transformer_block}


def build(name: str) -> Any:
    import keras

    keras.utils.set_random_seed(SEED)
    model = MODELS[name]()
    for w in model.weights:  # BatchNormalization's statistics too, so that it is not the identity
        if "moving_variance" in w.path:
            w.assign(np.random.default_rng(1).uniform(0.5, 2.0, w.shape).astype(np.float32))
        elif "moving_mean" in w.path:
            w.assign(np.random.default_rng(2).uniform(-0.5, 0.5, w.shape).astype(np.float32))
    return model


def sample_input(model: Any) -> np.ndarray:
    shape = (1, *model.inputs[0].shape[1:])
    return np.random.default_rng(SEED).uniform(-1, 1, shape).astype(np.float32)


def write(model: Any, kind: str, out: Path) -> Path:
    """Write ``model`` as a ``savedmodel`` directory, a ``keras`` file or a ``frozen`` GraphDef under ``out``."""
    import tensorflow as tf

    if kind == "savedmodel":
        path = out / "model_savedmodel"
        model.export(str(path), verbose=False)
    elif kind == "keras":
        path = out / "model.keras"
        model.save(str(path))
    elif kind == "frozen":
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        x = model.inputs[0]
        fn = tf.function(lambda t: model(t, training=False))
        cf = fn.get_concrete_function(tf.TensorSpec((None, *x.shape[1:]), tf.float32, name=x.name))
        frozen = convert_variables_to_constants_v2(cf)
        path = out / "model.pb"
        path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    else:
        raise ValueError(kind)
    return path


def frozen_names(path: Path) -> tuple[list[str], list[str]]:
    """A frozen GraphDef's Placeholder names and its output node (the Identity that ends it)."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(path.read_bytes())
    used = {i.lstrip("^").split(":")[0] for n in gd.node for i in n.input}
    ins = [n.name for n in gd.node if n.op == "Placeholder"]
    outs = [n.name for n in gd.node if n.name not in used and n.op not in ("Const", "NoOp", "Placeholder")]
    return ins, outs
