"""Write the TFLite fixtures of tests/frontends/tflite (run once, by hand; the files are committed).

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    /tmp/tfvenv/bin/python tests/frontends/tflite/make_fixtures.py

TensorFlow is not a dependency of openqnn or of its tests: it lives in its own venv (its numpy and
protobuf pins would disturb the main environment's), and this script is the only thing that needs it.
Each small Keras model (seeded weights) is written four ways into fixtures/:

- ``<name>_float32.tflite``: float;
- ``<name>_float16.tflite``: float16 weights (DEQUANTIZE ops to float32 in front of the ops);
- ``<name>_int8.tflite``: full integer, int8 activations and I/O, per-channel int8 weights;
- ``<name>_int16x8.tflite``: TFLite's 16x8 mode, int16 activations and I/O, int8 weights.

The representative dataset is ``REP_SAMPLES`` uniform inputs in [-1, 1] from ``numpy.random.default_rng(SEED)``;
fixtures/manifest.json records the seed, the shapes and which variants the converter refused.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import tensorflow as tf
from keras import layers

SEED = 0
REP_SAMPLES = 16
OUT = Path(__file__).resolve().parent / "fixtures"


def _conv() -> keras.Model:
    x = keras.Input((12, 12, 3), batch_size=1)
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(6, 3, strides=2, padding="valid")(y)
    return keras.Model(x, y)


def _depthwise() -> keras.Model:
    x = keras.Input((12, 12, 4), batch_size=1)
    y = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(x)
    y = layers.DepthwiseConv2D(3, strides=2, padding="valid")(y)
    return keras.Model(x, y)


def _dense() -> keras.Model:
    x = keras.Input((4, 4, 3), batch_size=1)
    y = layers.Flatten()(x)
    y = layers.Dense(16, activation="relu")(y)
    y = layers.Dense(10)(y)
    return keras.Model(x, layers.Softmax()(y))


def _add_mul() -> keras.Model:
    x = keras.Input((8, 8, 3), batch_size=1)
    a = layers.Conv2D(4, 1)(x)
    b = layers.Conv2D(4, 1)(x)
    s = layers.Add()([a, b])
    m = layers.Multiply()([s, b])
    return keras.Model(x, layers.Subtract()([m, a]))


def _pooling() -> keras.Model:
    x = keras.Input((12, 12, 4), batch_size=1)
    y = layers.MaxPooling2D(2)(x)
    y = layers.AveragePooling2D(3, strides=1, padding="same")(y)
    return keras.Model(x, y)


def _mean() -> keras.Model:
    x = keras.Input((6, 6, 8), batch_size=1)
    return keras.Model(x, layers.GlobalAveragePooling2D()(x))


def _concat_reshape() -> keras.Model:
    x = keras.Input((6, 6, 3), batch_size=1)
    a = layers.Conv2D(4, 1)(x)
    b = layers.Conv2D(2, 1)(x)
    y = layers.Concatenate()([a, b])
    y = layers.Reshape((36, 6))(y)
    return keras.Model(x, layers.Permute((2, 1))(y))


def _upsample_nearest() -> keras.Model:  # Keras 3 repeats: RESHAPE, TILE, RESHAPE
    x = keras.Input((5, 5, 3), batch_size=1)
    return keras.Model(x, layers.UpSampling2D(2, interpolation="nearest")(x))


def _resize_nearest() -> keras.Model:
    x = keras.Input((5, 5, 3), batch_size=1)
    return keras.Model(x, layers.Resizing(9, 11, interpolation="nearest")(x))


def _crop_max() -> keras.Model:
    x = keras.Input((8, 8, 3), batch_size=1)
    a = layers.Conv2D(4, 1)(x)
    b = layers.Conv2D(4, 1)(x)
    y = layers.Maximum()([a, b])
    y = layers.Minimum()([y, layers.Conv2D(4, 1)(x)])
    return keras.Model(x, layers.Cropping2D(((1, 2), (2, 1)))(y))


def _resize_bilinear() -> keras.Model:
    x = keras.Input((5, 5, 3), batch_size=1)
    return keras.Model(x, layers.UpSampling2D(2, interpolation="bilinear")(x))


def _pad() -> keras.Model:
    x = keras.Input((6, 6, 3), batch_size=1)
    y = layers.ZeroPadding2D(((1, 2), (0, 1)))(x)
    return keras.Model(x, layers.Conv2D(4, 3)(y))


def _activation(kind: str) -> Callable[[], keras.Model]:
    def build() -> keras.Model:
        x = keras.Input((4, 4, 8), batch_size=1)
        y = layers.Conv2D(8, 1)(x)
        if kind == "leaky_relu":
            return keras.Model(x, layers.LeakyReLU(0.2)(y))
        return keras.Model(x, layers.Activation(kind)(y))

    return build


def _transpose_conv() -> keras.Model:
    x = keras.Input((5, 5, 4), batch_size=1)
    return keras.Model(x, layers.Conv2DTranspose(3, 3, strides=2, padding="same")(x))


MODELS: dict[str, Callable[[], keras.Model]] = {
    "conv": _conv,
    "depthwise": _depthwise,
    "dense": _dense,
    "add_mul": _add_mul,
    "pooling": _pooling,
    "mean": _mean,
    "concat_reshape": _concat_reshape,
    "resize_nearest": _resize_nearest,
    "upsample_nearest": _upsample_nearest,
    "crop_max": _crop_max,
    "resize_bilinear": _resize_bilinear,
    "pad": _pad,
    "logistic": _activation("sigmoid"),
    "tanh": _activation("tanh"),
    "hard_swish": _activation("hard_swish"),
    "leaky_relu": _activation("leaky_relu"),
    "transpose_conv": _transpose_conv,
}


def convert(model: keras.Model, variant: str, samples: np.ndarray) -> bytes:
    c = tf.lite.TFLiteConverter.from_keras_model(model)  # freezes the weights (a concrete function would not)
    if variant == "float16":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]
    elif variant in ("int8", "int16x8"):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([s] for s in samples)
        if variant == "int8":
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = c.inference_output_type = tf.int8
        else:
            c.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            c.inference_input_type = c.inference_output_type = tf.int16
    return bytes(c.convert())


def main() -> int:
    OUT.mkdir(exist_ok=True)
    manifest: dict[str, object] = {"seed": SEED, "rep_samples": REP_SAMPLES, "tensorflow": tf.__version__,
                                   "models": {}}
    for i, (name, build) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(SEED + i)
        model = build()
        shape = (1, *model.inputs[0].shape[1:])
        rng = np.random.default_rng(SEED + i)
        samples = rng.uniform(-1, 1, (REP_SAMPLES, *shape)).astype(np.float32)
        entry: dict[str, object] = {"input_shape": list(shape), "variants": {}}
        for variant in ("float32", "float16", "int8", "int16x8"):
            try:
                data = convert(model, variant, samples)
            except Exception as e:  # the converter refuses some op in some mode: recorded, not fatal
                entry["variants"][variant] = f"refused: {str(e).splitlines()[0][:200]}"  # type: ignore[index]
                print(f"{name} {variant}: refused ({e})", file=sys.stderr)
                continue
            path = OUT / f"{name}_{variant}.tflite"
            path.write_bytes(data)
            entry["variants"][variant] = path.name  # type: ignore[index]
            print(f"{path.name}: {len(data)} bytes")
        manifest["models"][name] = entry  # type: ignore[index]
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
