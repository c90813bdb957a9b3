"""Reading the authors' Caffe files with protobuf: a deploy ``.prototxt`` (text format) and a ``.caffemodel``
(binary ``NetParameter``), with the schema ``caffe_release.proto`` (see :mod:`pspnet_lite.convert.caffe`), and
their blobs as arrays. Every failure is a :class:`CaffeError` of one line naming the file."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

SHOWN = 8  # names listed in one error line


class CaffeError(ValueError):
    """A Caffe file that cannot be converted; the message is one line naming the file and the layer."""


def _pb():
    """The compiled schema, or a one-line error saying how to install protobuf."""
    try:
        from google.protobuf import text_format  # noqa: F401  # lazy: protobuf is optional (the caffe extra)

        from . import caffe_release_pb2  # lazy: it imports protobuf, an optional dependency
    except ImportError as e:
        raise CaffeError(f"reading Caffe files needs the protobuf package ({e}); install it with "
                         "pip install 'pspnet-lite[caffe]' (or pip install protobuf)") from None
    return caffe_release_pb2


def short_names(names, n: int = SHOWN) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _read_bytes(path: str | os.PathLike, what: str) -> bytes:
    name = os.fspath(path)
    if os.path.isdir(name):
        raise CaffeError(f"{name!r} is a directory; give the {what} file")
    if not os.path.isfile(name):
        raise CaffeError(f"{what} {name!r} does not exist; check the path")
    return Path(name).read_bytes()


def read_prototxt(path: str | os.PathLike):
    """The ``NetParameter`` of a deploy ``.prototxt`` (protobuf text format)."""
    pb = _pb()
    from google.protobuf import text_format  # lazy: protobuf is optional (the caffe extra)

    name = os.fspath(path)
    raw = _read_bytes(path, "prototxt")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CaffeError(f"{name!r} is not a text prototxt (not UTF-8 text; a .caffemodel?); give the deploy "
                         ".prototxt first, then the .caffemodel") from None
    try:
        net = text_format.Parse(text, pb.NetParameter())
    except text_format.ParseError as e:
        raise CaffeError(f"cannot read {name!r} as a Caffe prototxt: {e} (a field or value the release's "
                         "prototxts do not use, or not a prototxt)") from None
    if len(net.layers):
        raise CaffeError(f"{name!r} uses Caffe's pre-2015 'layers' format; upgrade it with Caffe's "
                         "upgrade_net_proto_text first")
    if not len(net.layer):
        raise CaffeError(f"{name!r} has no 'layer' entries: not a Caffe network description")
    return net


def read_caffemodel(path: str | os.PathLike):
    """The ``NetParameter`` of a binary ``.caffemodel``."""
    pb = _pb()
    from google.protobuf.message import DecodeError  # lazy: protobuf is optional (the caffe extra)

    name = os.fspath(path)
    net = pb.NetParameter()
    try:
        net.ParseFromString(_read_bytes(path, "caffemodel"))
    except DecodeError as e:
        raise CaffeError(f"cannot read {name!r} as a .caffemodel (binary Caffe NetParameter: {e}); it may be "
                         "truncated, or another kind of file") from None
    if len(net.layers) and not len(net.layer):
        raise CaffeError(f"{name!r} uses Caffe's pre-2015 'layers' format; upgrade it with Caffe's "
                         "upgrade_net_proto_binary first")
    if not any(len(layer.blobs) for layer in net.layer):
        raise CaffeError(f"{name!r} holds no Caffe layers with weights: not a .caffemodel, or truncated")
    return net


def blob_shape(blob) -> tuple[int, ...]:
    """A blob's shape: its ``shape`` field, or the 4-D ``num, channels, height, width`` of older files."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def blob_array(blob, where: str) -> np.ndarray:
    """A blob's values as a float32 array of its shape (float or double data)."""
    shape = blob_shape(blob)
    values = blob.data if len(blob.data) else blob.double_data
    arr = np.asarray(values, dtype=np.float32)
    if arr.size != math.prod(shape):
        raise CaffeError(f"{where} holds {arr.size} values for shape {shape}: the file is corrupt or truncated")
    return arr.reshape(shape)

