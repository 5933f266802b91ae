"""Caffe's model schema (the part of ``caffe.proto`` a deploy net uses), built at run time without protoc.

Field names and numbers are Caffe's own (BVLC ``src/caffe/proto/caffe.proto``; ``Permute``, ``Normalize``,
``PriorBox`` and ``DetectionOutput`` are SSD's, from weiliu89/caffe), so ``.caffemodel`` files decode and
``.prototxt`` files parse with ``google.protobuf``. Fields a deploy net does not need (solver, data and loss
layers' parameters) are left out: the binary decoder keeps them as unknown fields and the text parser skips
them. ``V1LayerParameter`` (old ``layers { type: CONVOLUTION }`` models) is read for its weights only.

Each message is a list of ``(label, type, name, number, default)``; ``type`` is a scalar type, another
message, or an enum of ``ENUMS`` (``Message.Enum``, nested in its message as in Caffe; ``Engine`` is nested in
every message that has an ``engine`` field).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, message_factory

__all__ = ["message_class"]

OPT, REP = "optional", "repeated"

ENUMS: dict[str, list[tuple[str, int]]] = {
    "Phase": [("TRAIN", 0), ("TEST", 1)],
    "FillerParameter.VarianceNorm": [("FAN_IN", 0), ("FAN_OUT", 1), ("AVERAGE", 2)],
    "ParamSpec.DimCheckMode": [("STRICT", 0), ("PERMISSIVE", 1)],
    "Engine": [("DEFAULT", 0), ("CAFFE", 1), ("CUDNN", 2)],
    "PoolingParameter.PoolMethod": [("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2)],
    "PoolingParameter.RoundMode": [("CEIL", 0), ("FLOOR", 1)],
    "EltwiseParameter.EltwiseOp": [("PROD", 0), ("SUM", 1), ("MAX", 2)],
    "LRNParameter.NormRegion": [("ACROSS_CHANNELS", 0), ("WITHIN_CHANNEL", 1)],
    "PriorBoxParameter.CodeType": [("CORNER", 1), ("CENTER_SIZE", 2), ("CORNER_SIZE", 3)],
}

_ENGINE = (OPT, "Engine", "engine")
Field = tuple[str, str, str, int, Any]

MESSAGES: dict[str, list[Field]] = {
    "BlobShape": [(REP, "int64", "dim", 1, None)],
    "BlobProto": [(OPT, "BlobShape", "shape", 7, None), (REP, "float", "data", 5, None),
                  (REP, "float", "diff", 6, None), (REP, "double", "double_data", 8, None),
                  (REP, "double", "double_diff", 9, None), (OPT, "int32", "num", 1, 0),
                  (OPT, "int32", "channels", 2, 0), (OPT, "int32", "height", 3, 0), (OPT, "int32", "width", 4, 0)],
    "NetState": [(OPT, "Phase", "phase", 1, "TEST"), (OPT, "int32", "level", 2, 0), (REP, "string", "stage", 3, None)],
    "NetStateRule": [(OPT, "Phase", "phase", 1, None), (OPT, "int32", "min_level", 2, None),
                     (OPT, "int32", "max_level", 3, None), (REP, "string", "stage", 4, None),
                     (REP, "string", "not_stage", 5, None)],
    "NetParameter": [(OPT, "string", "name", 1, None), (REP, "string", "input", 3, None),
                     (REP, "BlobShape", "input_shape", 8, None), (REP, "int32", "input_dim", 4, None),
                     (OPT, "bool", "force_backward", 5, False), (OPT, "NetState", "state", 6, None),
                     (OPT, "bool", "debug_info", 7, False), (REP, "LayerParameter", "layer", 100, None),
                     (REP, "V1LayerParameter", "layers", 2, None)],
    "ParamSpec": [(OPT, "string", "name", 1, None), (OPT, "ParamSpec.DimCheckMode", "share_mode", 2, None),
                  (OPT, "float", "lr_mult", 3, 1.0), (OPT, "float", "decay_mult", 4, 1.0)],
    "FillerParameter": [(OPT, "string", "type", 1, "constant"), (OPT, "float", "value", 2, 0.0),
                        (OPT, "float", "min", 3, 0.0), (OPT, "float", "max", 4, 1.0), (OPT, "float", "mean", 5, 0.0),
                        (OPT, "float", "std", 6, 1.0), (OPT, "int32", "sparse", 7, -1),
                        (OPT, "FillerParameter.VarianceNorm", "variance_norm", 8, "FAN_IN")],
    "LayerParameter": [
        (OPT, "string", "name", 1, None), (OPT, "string", "type", 2, None), (REP, "string", "bottom", 3, None),
        (REP, "string", "top", 4, None), (OPT, "Phase", "phase", 10, None), (REP, "float", "loss_weight", 5, None),
        (REP, "ParamSpec", "param", 6, None), (REP, "BlobProto", "blobs", 7, None),
        (REP, "bool", "propagate_down", 11, None), (REP, "NetStateRule", "include", 8, None),
        (REP, "NetStateRule", "exclude", 9, None),
        (OPT, "BatchNormParameter", "batch_norm_param", 139, None), (OPT, "BiasParameter", "bias_param", 141, None),
        (OPT, "ClipParameter", "clip_param", 148, None), (OPT, "ConcatParameter", "concat_param", 104, None),
        (OPT, "ConvolutionParameter", "convolution_param", 106, None), (OPT, "CropParameter", "crop_param", 144, None),
        (OPT, "DropoutParameter", "dropout_param", 108, None), (OPT, "EltwiseParameter", "eltwise_param", 110, None),
        (OPT, "ELUParameter", "elu_param", 140, None), (OPT, "FlattenParameter", "flatten_param", 135, None),
        (OPT, "InnerProductParameter", "inner_product_param", 117, None),
        (OPT, "InputParameter", "input_param", 143, None), (OPT, "LRNParameter", "lrn_param", 118, None),
        (OPT, "PoolingParameter", "pooling_param", 121, None), (OPT, "PowerParameter", "power_param", 122, None),
        (OPT, "PReLUParameter", "prelu_param", 131, None), (OPT, "ReLUParameter", "relu_param", 123, None),
        (OPT, "ReshapeParameter", "reshape_param", 133, None), (OPT, "ScaleParameter", "scale_param", 142, None),
        (OPT, "SigmoidParameter", "sigmoid_param", 124, None), (OPT, "SoftmaxParameter", "softmax_param", 125, None),
        (OPT, "SliceParameter", "slice_param", 126, None), (OPT, "TanHParameter", "tanh_param", 127, None),
        # SSD (weiliu89/caffe)
        (OPT, "PermuteParameter", "permute_param", 202, None), (OPT, "PriorBoxParameter", "prior_box_param", 203, None),
        (OPT, "NormalizeParameter", "norm_param", 206, None),
    ],
    "V1LayerParameter": [(REP, "string", "bottom", 2, None), (REP, "string", "top", 3, None),
                         (OPT, "string", "name", 4, None), (REP, "BlobProto", "blobs", 6, None)],
    "BatchNormParameter": [(OPT, "bool", "use_global_stats", 1, None),
                           (OPT, "float", "moving_average_fraction", 2, 0.999), (OPT, "float", "eps", 3, 1e-5)],
    "BiasParameter": [(OPT, "int32", "axis", 1, 1), (OPT, "int32", "num_axes", 2, 1),
                      (OPT, "FillerParameter", "filler", 3, None)],
    "ClipParameter": [(OPT, "float", "min", 1, None), (OPT, "float", "max", 2, None)],
    "ConcatParameter": [(OPT, "int32", "axis", 2, 1), (OPT, "uint32", "concat_dim", 1, 1)],
    "ConvolutionParameter": [
        (OPT, "uint32", "num_output", 1, None), (OPT, "bool", "bias_term", 2, True), (REP, "uint32", "pad", 3, None),
        (REP, "uint32", "kernel_size", 4, None), (REP, "uint32", "stride", 6, None),
        (REP, "uint32", "dilation", 18, None), (OPT, "uint32", "pad_h", 9, 0), (OPT, "uint32", "pad_w", 10, 0),
        (OPT, "uint32", "kernel_h", 11, None), (OPT, "uint32", "kernel_w", 12, None),
        (OPT, "uint32", "stride_h", 13, None), (OPT, "uint32", "stride_w", 14, None),
        (OPT, "uint32", "group", 5, 1), (OPT, "FillerParameter", "weight_filler", 7, None),
        (OPT, "FillerParameter", "bias_filler", 8, None), (*_ENGINE, 15, "DEFAULT"), (OPT, "int32", "axis", 16, 1),
        (OPT, "bool", "force_nd_im2col", 17, False)],
    "CropParameter": [(OPT, "int32", "axis", 1, 2), (REP, "uint32", "offset", 2, None)],
    "DropoutParameter": [(OPT, "float", "dropout_ratio", 1, 0.5)],
    "EltwiseParameter": [(OPT, "EltwiseParameter.EltwiseOp", "operation", 1, "SUM"), (REP, "float", "coeff", 2, None),
                         (OPT, "bool", "stable_prod_grad", 3, True)],
    "ELUParameter": [(OPT, "float", "alpha", 1, 1.0)],
    "FlattenParameter": [(OPT, "int32", "axis", 1, 1), (OPT, "int32", "end_axis", 2, -1)],
    "InnerProductParameter": [(OPT, "uint32", "num_output", 1, None), (OPT, "bool", "bias_term", 2, True),
                              (OPT, "FillerParameter", "weight_filler", 3, None),
                              (OPT, "FillerParameter", "bias_filler", 4, None), (OPT, "int32", "axis", 5, 1),
                              (OPT, "bool", "transpose", 6, False)],
    "InputParameter": [(REP, "BlobShape", "shape", 1, None)],
    "LRNParameter": [(OPT, "uint32", "local_size", 1, 5), (OPT, "float", "alpha", 2, 1.0),
                     (OPT, "float", "beta", 3, 0.75), (OPT, "LRNParameter.NormRegion", "norm_region", 4, "ACROSS_CHANNELS"),
                     (OPT, "float", "k", 5, 1.0), (*_ENGINE, 6, "DEFAULT")],
    "PoolingParameter": [
        (OPT, "PoolingParameter.PoolMethod", "pool", 1, "MAX"), (OPT, "uint32", "pad", 4, 0),
        (OPT, "uint32", "pad_h", 9, 0), (OPT, "uint32", "pad_w", 10, 0), (OPT, "uint32", "kernel_size", 2, None),
        (OPT, "uint32", "kernel_h", 5, None), (OPT, "uint32", "kernel_w", 6, None), (OPT, "uint32", "stride", 3, 1),
        (OPT, "uint32", "stride_h", 7, None), (OPT, "uint32", "stride_w", 8, None), (*_ENGINE, 11, "DEFAULT"),
        (OPT, "bool", "global_pooling", 12, False), (OPT, "PoolingParameter.RoundMode", "round_mode", 13, "CEIL")],
    "PowerParameter": [(OPT, "float", "power", 1, 1.0), (OPT, "float", "scale", 2, 1.0), (OPT, "float", "shift", 3, 0.0)],
    "PReLUParameter": [(OPT, "FillerParameter", "filler", 1, None), (OPT, "bool", "channel_shared", 2, False)],
    "ReLUParameter": [(OPT, "float", "negative_slope", 1, 0.0), (*_ENGINE, 2, "DEFAULT")],
    "ReshapeParameter": [(OPT, "BlobShape", "shape", 1, None), (OPT, "int32", "axis", 2, 0),
                         (OPT, "int32", "num_axes", 3, -1)],
    "ScaleParameter": [(OPT, "int32", "axis", 1, 1), (OPT, "int32", "num_axes", 2, 1),
                       (OPT, "FillerParameter", "filler", 3, None), (OPT, "bool", "bias_term", 4, False),
                       (OPT, "FillerParameter", "bias_filler", 5, None)],
    "SigmoidParameter": [(*_ENGINE, 1, "DEFAULT")],
    "SoftmaxParameter": [(*_ENGINE, 1, "DEFAULT"), (OPT, "int32", "axis", 2, 1)],
    "SliceParameter": [(OPT, "int32", "axis", 3, 1), (REP, "uint32", "slice_point", 2, None),
                       (OPT, "uint32", "slice_dim", 1, 1)],
    "TanHParameter": [(*_ENGINE, 1, "DEFAULT")],
    "PermuteParameter": [(REP, "uint32", "order", 1, None)],
    "NormalizeParameter": [(OPT, "bool", "across_spatial", 1, True), (OPT, "FillerParameter", "scale_filler", 2, None),
                           (OPT, "bool", "channel_shared", 3, True), (OPT, "float", "eps", 4, 1e-10)],
    "PriorBoxParameter": [
        (REP, "float", "min_size", 1, None), (REP, "float", "max_size", 2, None), (REP, "float", "aspect_ratio", 3, None),
        (OPT, "bool", "flip", 4, True), (OPT, "bool", "clip", 5, False), (REP, "float", "variance", 6, None),
        (OPT, "uint32", "img_size", 7, None), (OPT, "uint32", "img_h", 8, None), (OPT, "uint32", "img_w", 9, None),
        (OPT, "float", "step", 10, None), (OPT, "float", "step_h", 11, None), (OPT, "float", "step_w", 12, None),
        (OPT, "float", "offset", 13, 0.5)],
}

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE, "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64,
            "uint32": _F.TYPE_UINT32, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING}
_PACKED = {("BlobShape", "dim"), ("BlobProto", "data"), ("BlobProto", "diff"), ("BlobProto", "double_data"),
           ("BlobProto", "double_diff")}


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="openqnn_caffe.proto", package="caffe", syntax="proto2")
    for enum_name, values in ENUMS.items():
        if "." not in enum_name and enum_name != "Engine":  # Phase: file level, as in Caffe
            _add_enum(fd.enum_type.add(name=enum_name), values)
    for msg_name, fields in MESSAGES.items():
        m = fd.message_type.add(name=msg_name)
        nested = {e.split(".")[1] for e in ENUMS if e.startswith(f"{msg_name}.")}
        if any(t == "Engine" for _, t, *_ in fields):  # Caffe declares Engine in each message that has one
            nested.add("Engine")
        for enum_name in sorted(nested):
            _add_enum(m.enum_type.add(name=enum_name), ENUMS.get(f"{msg_name}.{enum_name}", ENUMS.get(enum_name, [])))
        for label, type_name, name, number, default in fields:
            f = m.field.add(name=name, number=number,
                            label=_F.LABEL_REPEATED if label == REP else _F.LABEL_OPTIONAL)
            if type_name in _SCALARS:
                f.type = _SCALARS[type_name]
                if (msg_name, name) in _PACKED:
                    f.options.packed = True
            elif type_name in ENUMS:
                f.type = _F.TYPE_ENUM
                f.type_name = f".caffe.{msg_name}.Engine" if type_name == "Engine" else f".caffe.{type_name}"
            else:
                f.type = _F.TYPE_MESSAGE
                f.type_name = f".caffe.{type_name}"
            if default is not None:
                f.default_value = ("true" if default else "false") if isinstance(default, bool) else str(default)
    return fd


def _add_enum(e: descriptor_pb2.EnumDescriptorProto, values: list[tuple[str, int]]) -> None:
    for value_name, number in values:
        e.value.add(name=value_name, number=number)


@cache
def _classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pool

    return message_factory.GetMessages([_file()], pool=descriptor_pool.DescriptorPool())


def message_class(name: str) -> Any:
    """The message class of Caffe's ``name`` (``"NetParameter"``, ``"BlobProto"``, ...)."""
    return _classes()[f"caffe.{name}"]
