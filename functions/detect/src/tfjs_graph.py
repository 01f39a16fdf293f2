"""TensorFlow.js graph models (model.json + .bin weight shards) in TensorFlow, without the `tensorflowjs` package
(it pulls in JAX and TensorFlow Decision Forests to read a JSON file and some floats).

A TF.js graph model is a TensorFlow GraphDef written as JSON with its constants' values moved into the weight
shards. Loading it back: parse the JSON into a GraphDef, put each weight's values (dequantized: float16, or
uint8/uint16 with scale and min) into its Const node, and split the fused ops only TF.js has
(`FusedDepthwiseConv2dNative`, and `_FusedConv2D`/`_FusedMatMul`, whose TF kernels need attributes the converter
drops) back into the plain op + BiasAdd + activation; TensorFlow's own optimizer fuses them again when it runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

# TF.js dtype names -> numpy
DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "float16": np.float16, "uint8": np.uint8,
          "uint16": np.uint16, "int8": np.int8, "int16": np.int16, "complex64": np.complex64}
# fused op -> the plain op it starts with
UNFUSED = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedMatMul": "MatMul"}
FUSED_ONLY_ATTRS = ("fused_ops", "num_args", "epsilon", "leakyrelu_alpha", "TArgs")
ACTIVATIONS = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "LeakyRelu"}


class ModelError(ValueError):
    """A model file is missing, truncated or not a TF.js graph model; the message says which and why."""


def read_model_json(path: Path) -> dict[str, Any]:
    """The model.json of a TF.js graph model; ModelError in a sentence when it is not one."""
    try:
        model = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model file {path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path} is not a TF.js model.json ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, dict) or "modelTopology" not in model or "weightsManifest" not in model:
        raise ModelError(f"{path} is not a TF.js graph model (no modelTopology or weightsManifest)")
    if model.get("format", "graph-model") != "graph-model":
        raise ModelError(f"{path} is a TF.js {model['format']}; only graph models are read here")
    return model


def read_weights(manifest: list[dict[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """Every weight of the manifest, by name, dequantized to its original dtype."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        paths = [folder / name for name in group["paths"]]
        try:
            data = b"".join(path.read_bytes() for path in paths)
        except FileNotFoundError as exc:
            raise ModelError(f"weight file {exc.filename} is missing") from None
        offset = 0
        for weight in group["weights"]:
            values, offset = _weight(weight, data, offset, paths)
            weights[weight["name"]] = values
        if offset != len(data):
            raise ModelError(f"{', '.join(map(str, paths))} holds {len(data)} bytes, the manifest describes "
                             f"{offset}: the weights do not belong to this model.json")
    return weights


def _weight(weight: dict[str, Any], data: bytes, offset: int, paths: list[Path]) -> tuple[np.ndarray, int]:
    dtype = weight["dtype"]
    if dtype not in DTYPES:
        raise ModelError(f"weight {weight['name']!r} has dtype {dtype!r}, which this loader does not read")
    quantization = weight.get("quantization")
    stored = np.dtype(DTYPES[quantization["dtype"]] if quantization else DTYPES[dtype])
    count = math.prod(weight["shape"])
    end = offset + count * stored.itemsize
    if end > len(data):
        raise ModelError(f"{', '.join(map(str, paths))} is shorter than its model.json says ({len(data)} bytes, "
                         f"{weight['name']!r} ends at {end}): truncated or corrupted")
    values = np.frombuffer(data, stored, count, offset).reshape(weight["shape"])
    if quantization and quantization["dtype"] != "float16":  # affine: q * scale + min
        values = values.astype(np.float32) * quantization["scale"] + quantization["min"]
    target = DTYPES[dtype]
    if np.issubdtype(target, np.integer) and not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values)
    return values.astype(target), end


def graph_def(model: dict[str, Any], weights: dict[str, np.ndarray]) -> Any:
    """The model's tf.compat.v1.GraphDef, weights in its constants, fused TF.js ops split."""
    import tensorflow as tf
    from google.protobuf import json_format

    graph = tf.compat.v1.GraphDef()
    try:
        json_format.ParseDict(model["modelTopology"], graph, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ModelError(f"the model's topology is not a TensorFlow graph: {exc}") from None
    nodes = []
    for node in graph.node:
        node.device = ""  # the converter pins some nodes to /device:CPU:0: let TensorFlow place them
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
        nodes.extend(_unfused(node) if node.op in UNFUSED else [node])
    missing = [n.name for n in nodes if n.op == "Const" and n.name not in weights and not _inline(n)]
    if missing:
        raise ModelError(f"the weights hold no values for {len(missing)} constant(s), e.g. {missing[0]!r}")
    del graph.node[:]
    graph.node.extend(nodes)
    return graph


def _inline(node: Any) -> bool:
    """Whether a Const node carries its value in the topology itself (small constants may)."""
    tensor = node.attr["value"].tensor
    return bool(tensor.tensor_content) or any(len(values) for field, values in tensor.ListFields()
                                              if field.name.endswith("_val"))


def _unfused(node: Any) -> list[Any]:
    """A fused node as its plain op, BiasAdd and activation; the last one keeps the fused node's name."""
    import tensorflow as tf

    ops = [op.decode() for op in node.attr["fused_ops"].list.s]
    args = int(node.attr["num_args"].i)
    if not ops or ops[0] != "BiasAdd" or args != 1 or len(ops) > 2 or (len(ops) == 2 and ops[1] not in ACTIVATIONS):
        raise ModelError(f"{node.name}: fused ops {ops} with {args} argument(s) are not supported "
                         "(BiasAdd and one activation are)")
    inputs = list(node.input)
    base = tf.compat.v1.NodeDef(name=f"{node.name}/{UNFUSED[node.op]}", op=UNFUSED[node.op], input=inputs[:2])
    for key, value in node.attr.items():
        if key not in FUSED_ONLY_ATTRS:
            base.attr[key].CopyFrom(value)
    dtype = node.attr["T"]
    chain = [base, tf.compat.v1.NodeDef(name=f"{node.name}/BiasAdd", op="BiasAdd", input=[base.name, inputs[2]])]
    chain[1].attr["T"].CopyFrom(dtype)
    if node.op != "_FusedMatMul":
        chain[1].attr["data_format"].CopyFrom(node.attr["data_format"])
    if len(ops) == 2:
        activation = tf.compat.v1.NodeDef(name=node.name, op=ops[1], input=[chain[1].name])
        activation.attr["T"].CopyFrom(dtype)
        if ops[1] == "LeakyRelu":
            activation.attr["alpha"].f = node.attr["leakyrelu_alpha"].f
        chain.append(activation)
    chain[-1].name = node.name
    return chain


def load(model_json: Path) -> tuple[Any, dict[str, Any]]:
    """(GraphDef, the model's signature: {"inputs": {...}, "outputs": {...}}) of the TF.js graph model."""
    model = read_model_json(model_json)
    weights = read_weights(model["weightsManifest"], model_json.parent)
    return graph_def(model, weights), model.get("signature", {})


def concrete_function(graph: Any, inputs: list[str], outputs: list[str]) -> Any:
    """A TensorFlow function from tensors `inputs` to `outputs` of `graph` (names without ':0')."""
    import tensorflow as tf

    def import_graph() -> None:
        tf.compat.v1.import_graph_def(graph, name="")

    wrapped = tf.compat.v1.wrap_function(import_graph, [])
    return wrapped.prune([f"{name}:0" for name in inputs], [f"{name}:0" for name in outputs])
