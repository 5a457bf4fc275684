"""Export a fitted candidate to a self-contained ONNX graph.

The graph takes ``surface_m2`` (tensor(float) [None, 1]) and, only when the model uses it, ``district``
(tensor(string) [None, 1]; unknown districts are ignored by the one-hot encoder), and returns three
tensors ``rent_eur``, ``low`` and ``high`` (tensor(float) [None, 1]). Every candidate predicts the *log*
rent; the graph adds the surface transform in front of the scikit-learn part (converted by skl2onnx) and,
behind it, ``exp`` and the constant log-scale conformal half-width, so that

    rent_eur = exp(f(x)),  low = exp(f(x) - q),  high = exp(f(x) + q)

which is positive by construction and symmetric on the log scale: the prediction side recovers the
predictive distribution as centre = (ln low + ln high) / 2 and σ = (ln high − ln low) / (2 · z₀.₉₅).
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["to_onnx", "onnx_signature", "OPSET", "ML_OPSET", "SURFACE_FEATURE", "OUTPUTS"]

#: Fixed opsets: ai.onnx 17 and ai.onnx.ml 3 are supported by skl2onnx 1.20 and onnxruntime 1.32.
OPSET = 17
ML_OPSET = 3
#: Name of the (transformed) surface column inside the scikit-learn pipeline.
SURFACE_FEATURE = "feat_surface"
OUTPUTS = ("rent_eur", "low", "high")


def to_onnx(
    estimator: Any,
    *,
    surface_transform: Literal["log", "identity"],
    uses_district: bool,
    log_halfwidth: float,
    name: str = "rentlake",
    doc: str = "",
) -> bytes:
    """Convert a fitted scikit-learn regressor of log rent into the served ONNX graph.

    Parameters
    ----------
    estimator : sklearn estimator or Pipeline
        Fitted on a DataFrame with column ``feat_surface`` (and ``district`` when ``uses_district``),
        predicting ``ln(rent)``.
    surface_transform : {"log", "identity"}
        How ``surface_m2`` becomes ``feat_surface``.
    uses_district : bool
        Whether the graph declares the ``district`` input.
    log_halfwidth : float
        Half-width ``q`` of the interval on the log scale.
    name, doc : str
        Graph name and documentation string.

    Returns
    -------
    bytes
        The serialised, checked ONNX model.
    """
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types: list[tuple[str, Any]] = [(SURFACE_FEATURE, FloatTensorType([None, 1]))]
    if uses_district:
        initial_types.append(("district", StringTensorType([None, 1])))
    sk = convert_sklearn(
        estimator, initial_types=initial_types, target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET}
    )
    g = sk.graph
    if len(g.output) != 1:
        raise ValueError(f"expected a single regressor output, got {[o.name for o in g.output]}")
    raw = g.output[0].name

    pre = "log" if surface_transform == "log" else "identity"
    prefix = [
        helper.make_node(
            "Log" if pre == "log" else "Identity", ["surface_m2"], [SURFACE_FEATURE], name="surface_transform"
        )
    ]
    q = helper.make_tensor("rl_log_halfwidth", TensorProto.FLOAT, [], [float(log_halfwidth)])
    shape = helper.make_tensor("rl_shape", TensorProto.INT64, [2], [-1, 1])
    suffix = [
        # Regressors output [N, 1] already; the Reshape pins the declared shape whatever the converter did.
        helper.make_node("Reshape", [raw, "rl_shape"], ["rl_log_rent"], name="pin_shape"),
        helper.make_node("Exp", ["rl_log_rent"], ["rent_eur"], name="estimate"),
        helper.make_node("Sub", ["rl_log_rent", "rl_log_halfwidth"], ["rl_log_low"], name="log_low"),
        helper.make_node("Exp", ["rl_log_low"], ["low"], name="low"),
        helper.make_node("Add", ["rl_log_rent", "rl_log_halfwidth"], ["rl_log_high"], name="log_high"),
        helper.make_node("Exp", ["rl_log_high"], ["high"], name="high"),
    ]
    inputs = [helper.make_tensor_value_info("surface_m2", TensorProto.FLOAT, [None, 1])]
    if uses_district:
        inputs.append(helper.make_tensor_value_info("district", TensorProto.STRING, [None, 1]))
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None, 1]) for o in OUTPUTS]
    graph = helper.make_graph(
        prefix + list(g.node) + suffix,
        name,
        inputs,
        outputs,
        initializer=list(g.initializer) + [q, shape],
        doc_string=doc,
    )
    model = helper.make_model(graph, opset_imports=list(sk.opset_import), producer_name="rentlake")
    model.ir_version = sk.ir_version
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


_ELEM = {1: "tensor(float)", 7: "tensor(int64)", 8: "tensor(string)", 11: "tensor(double)"}


def _dims(vi: Any) -> list[Any]:
    return [
        d.dim_param or (d.dim_value if d.HasField("dim_value") else None) or None
        for d in vi.type.tensor_type.shape.dim
    ]


def onnx_signature(onnx_bytes: bytes) -> dict[str, Any]:
    """Describe the inputs and outputs of an exported model (for the model card and the runtime).

    Parameters
    ----------
    onnx_bytes : bytes
        Serialised ONNX model.

    Returns
    -------
    dict
        ``{"inputs": [{"name", "type", "shape"}], "outputs": [...], "opset": {domain: version}}``.
    """
    import onnx

    m = onnx.load_from_string(onnx_bytes)

    def desc(vi: Any) -> dict[str, Any]:
        return {
            "name": vi.name,
            "type": _ELEM.get(vi.type.tensor_type.elem_type, str(vi.type.tensor_type.elem_type)),
            "shape": _dims(vi),
        }

    return {
        "inputs": [desc(i) for i in m.graph.input],
        "outputs": [desc(o) for o in m.graph.output],
        "output_names": [o.name for o in m.graph.output],
        "opset": {(op.domain or "ai.onnx"): int(op.version) for op in m.opset_import},
    }
