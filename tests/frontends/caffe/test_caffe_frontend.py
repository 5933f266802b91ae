"""The Caffe frontend's SSD head (Normalize, Permute, PriorBox, DetectionOutput), its errors and its CLI."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_oracle import caffe_forward, parse, random_weights, write_net

import openqnn
from openqnn.cli.caffe_converter import main as caffe_main
from openqnn.errors import ConversionError, InvalidModelError, UnsupportedOpError
from openqnn.frontends.caffe import CaffeNet
from openqnn.frontends.caffe.reader import prior_boxes

SSD = '''name: "ssd"
input: "data"
input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
layer { name: "conv4" type: "Convolution" bottom: "data" top: "conv4" convolution_param { num_output: 8 kernel_size: 3 stride: 4 pad: 1 } }
layer { name: "relu4" type: "ReLU" bottom: "conv4" top: "conv4" }
layer { name: "conv4_norm" type: "Normalize" bottom: "conv4" top: "conv4_norm" norm_param { across_spatial: false channel_shared: false } }
layer { name: "conv4_norm_mbox_loc" type: "Convolution" bottom: "conv4_norm" top: "conv4_norm_mbox_loc" convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layer { name: "conv4_norm_mbox_loc_perm" type: "Permute" bottom: "conv4_norm_mbox_loc" top: "conv4_norm_mbox_loc_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conv4_norm_mbox_loc_flat" type: "Flatten" bottom: "conv4_norm_mbox_loc_perm" top: "mbox_loc" flatten_param { axis: 1 } }
layer { name: "conv4_norm_mbox_conf" type: "Convolution" bottom: "conv4_norm" top: "conv4_norm_mbox_conf" convolution_param { num_output: 12 kernel_size: 3 pad: 1 } }
layer { name: "conv4_norm_mbox_conf_perm" type: "Permute" bottom: "conv4_norm_mbox_conf" top: "conv4_norm_mbox_conf_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conv4_norm_mbox_conf_flat" type: "Flatten" bottom: "conv4_norm_mbox_conf_perm" top: "mbox_conf" flatten_param { axis: 1 } }
layer { name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" top: "mbox_conf_reshape" reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }
layer { name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape" top: "mbox_conf_softmax" softmax_param { axis: 2 } }
layer { name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax" top: "mbox_conf_flatten" flatten_param { axis: 1 } }
layer { name: "conv4_norm_mbox_priorbox" type: "PriorBox" bottom: "conv4_norm" bottom: "data" top: "mbox_priorbox"
  prior_box_param { min_size: 8 max_size: 16 aspect_ratio: 2 flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: 4 offset: 0.5 } }
layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc" bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out"
  include { phase: TEST } }
'''
SSD_OUTS = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]


def _ssd(tmp_path):
    weights = random_weights(SSD, {"data": (1, 3, 32, 32)})
    return write_net(tmp_path, SSD, weights, "ssd"), weights


def test_ssd_head_cut_before_detection_output(tmp_path):
    path, weights = _ssd(tmp_path)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    graph = openqnn.convert(path, out_nodes=SSD_OUTS)
    got = openqnn.Session(graph, backend="cpu").run({"data": x})
    want = caffe_forward(SSD, weights, {"data": x})
    for name in ("mbox_loc", "mbox_conf_flatten"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-6, err_msg=name)
    priors = got["mbox_priorbox"]
    assert priors.shape == (1, 2, 8 * 8 * 4 * 4)  # 8x8 cells, 4 priors (min, sqrt(min*max), ar 2, ar 1/2)
    # the first cell, centred at (2, 2) of a 32x32 image: min box 8, sqrt(8*16) box, 2:1 and 1:2 boxes
    s = np.sqrt(8 * 16) / 2
    w2, h2 = 8 * np.sqrt(2) / 2, 8 / np.sqrt(2) / 2
    first = np.array([[-2, -2, 6, 6], [2 - s, 2 - s, 2 + s, 2 + s], [2 - w2, 2 - h2, 2 + w2, 2 + h2],
                      [2 - h2, 2 - w2, 2 + h2, 2 + w2]]) / 32
    np.testing.assert_allclose(priors[0, 0, :16].reshape(4, 4), first, rtol=1e-6)
    np.testing.assert_allclose(priors[0, 1, :8], [0.1, 0.1, 0.2, 0.2] * 2)


def test_prior_box_clip_and_image_size():
    p = parse('layer { name: "p" type: "PriorBox" prior_box_param { min_size: 40 clip: true variance: 0.1 '
              'img_size: 60 } }').layer[0].prior_box_param
    out = prior_boxes(p, (1, 2), (99, 99))
    # steps 60 / 1 and 60 / 2: centres (15, 30) and (45, 30), boxes 40 x 40, clipped to the image
    np.testing.assert_allclose(out[0, 0].reshape(2, 4), np.array([[0, 10, 35, 50], [25, 10, 60, 50]]) / 60, rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], 0.1)


def test_detection_output_is_refused_naming_itself(tmp_path):
    path, _ = _ssd(tmp_path)
    with pytest.raises(UnsupportedOpError) as e:
        openqnn.convert(path)
    msg = str(e.value)
    assert "\n" not in msg
    for part in (str(path), "'detection_out'", "'DetectionOutput'", "--out_node", "Convolution", "PriorBox"):
        assert part in msg


def test_unsupported_layer_names_layer_type_file_and_list(tmp_path):
    text = ('input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
            'layer { name: "odd" type: "SPP" bottom: "data" top: "odd" }\n')
    path = write_net(tmp_path, text, {}, "odd")
    with pytest.raises(UnsupportedOpError, match=r"layer 'odd' of type 'SPP' is not supported; the Caffe converter "
                                                 r"supports .*Convolution.*Eltwise.*LRN") as e:
        openqnn.convert(path)
    assert str(path) in str(e.value)


def test_missing_weights_and_bad_files(tmp_path):
    text = ('input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }\n')
    path = write_net(tmp_path, text, {}, "noweights")
    with pytest.raises(ConversionError, match=r"layer 'c' \(Convolution\): it needs 2 weight blob"):
        openqnn.convert(path)
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { name: \n")
    with pytest.raises(InvalidModelError, match="not a Caffe net definition"):
        openqnn.convert(bad)
    with pytest.raises(InvalidModelError, match=r"no such Caffe \.caffemodel"):
        openqnn.convert(CaffeNet.of(path, tmp_path / "missing.caffemodel"))


def test_train_phase_layers_and_v1_weights(tmp_path):
    text = ('input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
            'layer { name: "drop" type: "Dropout" bottom: "data" top: "data" include { phase: TRAIN } }\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }\n'
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "c" bottom: "label" top: "loss" include { phase: TRAIN } }\n')
    (tmp_path / "v1.prototxt").write_text(text)
    from openqnn.frontends.caffe.schema import message_class

    model = message_class("NetParameter")()
    w, b = np.arange(4, dtype=np.float32).reshape(2, 2, 1, 1), np.array([1, -1], np.float32)
    lay = model.layers.add(name="c")  # a V1 (old) .caffemodel, its blobs in legacy num/channels/height/width
    for arr in (w, b.reshape(1, 1, 1, 2)):
        blob = lay.blobs.add(num=arr.shape[0], channels=arr.shape[1], height=arr.shape[2], width=arr.shape[3])
        blob.data.extend(arr.reshape(-1).tolist())
    (tmp_path / "v1.caffemodel").write_bytes(model.SerializeToString())
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    got = openqnn.Session(openqnn.convert(tmp_path / "v1.prototxt"), backend="cpu").run({"data": x})
    np.testing.assert_allclose(got["c"], np.einsum("oi,nihw->nohw", w[:, :, 0, 0], x) + b.reshape(1, 2, 1, 1),
                               rtol=1e-5)


def test_cli_with_caffe_bin(tmp_path, capsys):
    path, _ = _ssd(tmp_path)
    weights = tmp_path / "trained.caffemodel"
    path.with_suffix(".caffemodel").rename(weights)
    out = tmp_path / "out" / "ssd.cpp"
    out.parent.mkdir()
    outs = [w for o in SSD_OUTS for w in ("--out_node", o)]
    rc = caffe_main(["-i", str(path), "-b", str(weights), "-o", str(out), *outs])
    assert rc == 0
    assert (tmp_path / "out" / "ssd_net.json").is_file() and (tmp_path / "out" / "ssd.bin").is_file()
    rc = caffe_main(["-i", str(path), "--dry_run", "--out_node", "mbox_loc"])  # no weights beside it now
    assert rc != 0
    assert "--caffe_bin" in capsys.readouterr().err
