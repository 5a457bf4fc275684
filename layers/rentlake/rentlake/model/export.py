"""Export a fitted candidate to a self-contained ONNX graph.

The graph takes ``surface_m2`` (tensor(float) [None, 1]) and, only when the model uses it, ``district``
(tensor(string) [None, 1]; unknown districts are ignored by the one-hot encoder), and returns three
tensors ``rent_eur``, ``low`` and ``high`` (tensor(float) [None, 1]). The graph adds the surface
transform in front of the scikit-learn part (converted by skl2onnx) and, behind it, the local interval:

* the listing's surface band is the number of band edges at or below its surface (``GreaterOrEqual``
  against the edges, summed); its group is its district's position in the calibrated districts
  (``LabelEncoder``, 0 for any other); its half-width ``h`` is gathered from the flattened band table;
* log scale: ``rent_eur = exp(f)``, ``low = exp(f − h)``, ``high = exp(f + h)``: positive, and symmetric
  on the log scale (centre = (ln low + ln high) / 2);
* linear scale: with the modelled spread ``s = max(a + b·surface, floor)``,
  ``rent_eur = max(f, 0)``, ``low = max(f − h·s, 0)``, ``high = max(f + h·s, 0)``: never below 0 €.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from rentlake.model.intervals import BandTable

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
    scale: str,
    bands: BandTable,
    spread: dict[str, float] | None = None,
    name: str = "rentlake",
    doc: str = "",
) -> bytes:
    """Convert a fitted scikit-learn regressor and its local interval into the served ONNX graph.

    Parameters
    ----------
    estimator : sklearn estimator or Pipeline
        Fitted on a DataFrame with column ``feat_surface`` (and ``district`` when ``uses_district``),
        predicting ``ln(rent)`` (log scale) or the rent (linear scale).
    surface_transform : {"log", "identity"}
        How ``surface_m2`` becomes ``feat_surface``.
    uses_district : bool
        Whether the graph declares the ``district`` input.
    scale : {"log", "linear"}
        The scale the estimator predicts on.
    bands : BandTable
        The half-widths per surface band and group.
    spread : dict, optional
        ``intercept``, ``slope``, ``floor`` of the modelled spread (linear scale only).
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

    if scale not in ("log", "linear") or (scale == "linear") != (spread is not None):
        raise ValueError(f"scale {scale!r} needs a spread exactly when it is 'linear'")
    initial_types: list[tuple[str, Any]] = [(SURFACE_FEATURE, FloatTensorType([None, 1]))]
    if uses_district:
        initial_types.append(("district", StringTensorType([None, 1])))
    sk = convert_sklearn(
        estimator, initial_types=initial_types, target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET}
    )
    g = sk.graph
    if len(g.output) != 1:
        raise ValueError(f"expected a single regressor output, got {[o.name for o in g.output]}")
    prefix = [
        helper.make_node(
            "Log" if surface_transform == "log" else "Identity",
            ["surface_m2"],
            [SURFACE_FEATURE],
            name="surface_transform",
        )
    ]
    shape = helper.make_tensor("rl_shape", TensorProto.INT64, [2], [-1, 1])
    # Regressors output [N, 1] already; the Reshape pins the declared shape whatever the converter did.
    pin = [helper.make_node("Reshape", [g.output[0].name, "rl_shape"], ["rl_center"], name="pin_shape")]
    lookup, consts = _halfwidth_nodes(bands, uses_district and bool(bands.groups))
    tail, tail_consts = _output_nodes(scale, spread)
    inputs = [helper.make_tensor_value_info("surface_m2", TensorProto.FLOAT, [None, 1])]
    if uses_district:
        inputs.append(helper.make_tensor_value_info("district", TensorProto.STRING, [None, 1]))
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None, 1]) for o in OUTPUTS]
    graph = helper.make_graph(
        prefix + list(g.node) + pin + lookup + tail,
        name,
        inputs,
        outputs,
        initializer=list(g.initializer) + [shape, *consts, *tail_consts],
        doc_string=doc,
    )
    opsets = {op.domain: op.version for op in sk.opset_import}
    if uses_district and bands.groups:
        opsets["ai.onnx.ml"] = max(opsets.get("ai.onnx.ml", ML_OPSET), ML_OPSET)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        producer_name="rentlake",
    )
    model.ir_version = sk.ir_version
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _halfwidth_nodes(bands: BandTable, by_group: bool) -> tuple[list[Any], list[Any]]:
    """Nodes giving ``rl_h`` [N, 1]: the band table's half-width of each listing."""
    from onnx import TensorProto, helper

    # A +inf sentinel edge keeps one code path for a single band (no listing is at or above it).
    edges = [*bands.edges, float("inf")]
    consts = [
        helper.make_tensor("rl_edges", TensorProto.FLOAT, [1, len(edges)], edges),
        helper.make_tensor("rl_axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("rl_table", TensorProto.FLOAT, [len(bands.flat())], bands.flat()),
    ]
    nodes = [
        helper.make_node("GreaterOrEqual", ["surface_m2", "rl_edges"], ["rl_above"], name="band_above"),
        helper.make_node("Cast", ["rl_above"], ["rl_above_i"], to=TensorProto.INT64, name="band_cast"),
        helper.make_node("ReduceSum", ["rl_above_i", "rl_axis1"], ["rl_band"], keepdims=1, name="band"),
    ]
    index = "rl_band"
    if by_group:
        width = len(bands.groups) + 1
        consts.append(helper.make_tensor("rl_width", TensorProto.INT64, [], [width]))
        nodes += [
            helper.make_node(
                "LabelEncoder",
                ["district"],
                ["rl_group"],
                domain="ai.onnx.ml",
                keys_strings=list(bands.groups),
                values_int64s=list(range(1, width)),
                default_int64=0,
                name="group",
            ),
            helper.make_node("Mul", ["rl_band", "rl_width"], ["rl_row"], name="table_row"),
            helper.make_node("Add", ["rl_row", "rl_group"], ["rl_index"], name="table_index"),
        ]
        index = "rl_index"
    nodes.append(helper.make_node("Gather", ["rl_table", index], ["rl_h"], axis=0, name="halfwidth"))
    return nodes, consts


def _output_nodes(scale: str, spread: dict[str, float] | None) -> tuple[list[Any], list[Any]]:
    """Nodes from ``rl_center`` and ``rl_h`` to the outputs ``rent_eur``, ``low``, ``high``."""
    from onnx import TensorProto, helper

    if scale == "log":
        return [
            helper.make_node("Exp", ["rl_center"], ["rent_eur"], name="estimate"),
            helper.make_node("Sub", ["rl_center", "rl_h"], ["rl_log_low"], name="log_low"),
            helper.make_node("Exp", ["rl_log_low"], ["low"], name="low"),
            helper.make_node("Add", ["rl_center", "rl_h"], ["rl_log_high"], name="log_high"),
            helper.make_node("Exp", ["rl_log_high"], ["high"], name="high"),
        ], []
    assert spread is not None
    consts = [
        helper.make_tensor(f"rl_spread_{k}", TensorProto.FLOAT, [], [float(spread[k])])
        for k in ("intercept", "slope", "floor")
    ] + [helper.make_tensor("rl_zero", TensorProto.FLOAT, [], [0.0])]
    nodes = [
        helper.make_node("Mul", ["surface_m2", "rl_spread_slope"], ["rl_s1"], name="spread_slope"),
        helper.make_node("Add", ["rl_s1", "rl_spread_intercept"], ["rl_s2"], name="spread_line"),
        helper.make_node("Max", ["rl_s2", "rl_spread_floor"], ["rl_spread"], name="spread"),
        helper.make_node("Mul", ["rl_h", "rl_spread"], ["rl_hw"], name="halfwidth_eur"),
        helper.make_node("Max", ["rl_center", "rl_zero"], ["rent_eur"], name="estimate"),
        helper.make_node("Sub", ["rl_center", "rl_hw"], ["rl_low_raw"], name="low_raw"),
        helper.make_node("Max", ["rl_low_raw", "rl_zero"], ["low"], name="low"),
        helper.make_node("Add", ["rl_center", "rl_hw"], ["rl_high_raw"], name="high_raw"),
        helper.make_node("Max", ["rl_high_raw", "rl_zero"], ["high"], name="high"),
    ]
    return nodes, consts


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
