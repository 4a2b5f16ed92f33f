"""A direct, fast ONNX export of scikit-learn's IsolationForest.

skl2onnx converts an IsolationForest node by node and then optimises the graph, which
takes tens of seconds for a default forest of 100 trees. The forest's score has a closed
form, so it is exported here as one ``TreeEnsembleRegressor``:

* each leaf's weight is ``(depth + c(n_leaf)) / (n_trees * c(max_samples))``, where
  ``c(n)`` is the average path length of an unsuccessful BST search — summing over trees
  gives the normalised mean path length ``h``;
* scikit-learn's ``decision_function`` is ``-2**(-h) - offset_``, so the anomaly score
  (higher = more anomalous) is ``2**(-h) + offset_``.

>>> import numpy as np
>>> from sklearn.ensemble import IsolationForest
>>> X = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
>>> m = IsolationForest(n_estimators=20, random_state=0).fit(X)
>>> import onnxruntime as ort
>>> s = ort.InferenceSession(iforest_to_onnx(m, 3).SerializeToString(), providers=["CPUExecutionProvider"])
>>> bool(np.allclose(s.run(["score"], {"input": X})[0], -m.decision_function(X), atol=1e-5))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["iforest_to_onnx", "average_path_length"]


def average_path_length(n: np.ndarray | float) -> np.ndarray:
    """``c(n)`` as scikit-learn computes it (0 for n <= 1, 1 for n == 2)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    big = n > 2
    out[two] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def iforest_to_onnx(model: Any, n_features: int) -> Any:
    """The ONNX graph ``input -> score`` (plus ``label``: -1 anomaly, 1 normal, like ``predict``)."""
    from onnx import TensorProto, helper

    n_trees = len(model.estimators_)
    denom = n_trees * float(average_path_length(np.array([model.max_samples_]))[0])
    tree_ids: list[int] = []
    node_ids: list[int] = []
    feat_ids: list[int] = []
    modes: list[str] = []
    values: list[float] = []
    trues: list[int] = []
    falses: list[int] = []
    t_tree: list[int] = []
    t_node: list[int] = []
    t_weight: list[float] = []
    for t, (est, feats) in enumerate(zip(model.estimators_, model.estimators_features_)):
        tree = est.tree_
        left, right = tree.children_left, tree.children_right
        depth = np.zeros(tree.node_count, dtype=np.int64)
        for i in range(tree.node_count):  # parents come before children in scikit-learn's arrays
            if left[i] != -1:
                depth[left[i]] = depth[i] + 1
                depth[right[i]] = depth[i] + 1
        leaf_weight = (depth + average_path_length(tree.n_node_samples)) / denom
        for i in range(tree.node_count):
            tree_ids.append(t)
            node_ids.append(i)
            if left[i] == -1:
                modes.append("LEAF")
                feat_ids.append(0)
                values.append(0.0)
                trues.append(0)
                falses.append(0)
                t_tree.append(t)
                t_node.append(i)
                t_weight.append(float(leaf_weight[i]))
            else:
                modes.append("BRANCH_LEQ")
                feat_ids.append(int(feats[tree.feature[i]]))
                values.append(float(tree.threshold[i]))
                trues.append(int(left[i]))
                falses.append(int(right[i]))
    ens = helper.make_node(
        "TreeEnsembleRegressor", ["input"], ["if_h"], domain="ai.onnx.ml", name="if_trees", n_targets=1,
        aggregate_function="SUM", post_transform="NONE", nodes_treeids=tree_ids, nodes_nodeids=node_ids,
        nodes_featureids=feat_ids, nodes_modes=modes, nodes_values=values, nodes_truenodeids=trues,
        nodes_falsenodeids=falses, nodes_missing_value_tracks_true=[0] * len(modes), target_treeids=t_tree,
        target_nodeids=t_node, target_ids=[0] * len(t_tree), target_weights=t_weight)
    inits = [helper.make_tensor("if_two", TensorProto.FLOAT, [], [2.0]),
             helper.make_tensor("if_offset", TensorProto.FLOAT, [], [float(model.offset_)]),
             helper.make_tensor("if_flat", TensorProto.INT64, [1], [-1]),
             helper.make_tensor("if_zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("if_pos", TensorProto.INT64, [], [1]),
             helper.make_tensor("if_neg", TensorProto.INT64, [], [-1])]
    nodes = [ens,
             helper.make_node("Reshape", ["if_h", "if_flat"], ["if_hf"], name="if_reshape"),
             helper.make_node("Neg", ["if_hf"], ["if_negh"], name="if_negate"),
             helper.make_node("Pow", ["if_two", "if_negh"], ["if_s"], name="if_pow"),
             helper.make_node("Add", ["if_s", "if_offset"], ["score"], name="if_score"),
             helper.make_node("Greater", ["score", "if_zero"], ["if_anom"], name="if_is_anomaly"),
             helper.make_node("Where", ["if_anom", "if_neg", "if_pos"], ["label"], name="if_label")]
    graph = helper.make_graph(
        nodes, "streamml", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None]),
         helper.make_tensor_value_info("label", TensorProto.INT64, [None])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
                          producer_name="streamml")
    m.ir_version = 8
    return m
