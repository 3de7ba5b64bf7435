"""A personal head written into an int8 .tflite file: the same backbone, the new last layer, integer-only.

The last FULLY_CONNECTED layer's int8 weights, int32 bias and quantization
parameters are overwritten in place (``tflite_file``): nothing else in the file
changes, so any TFLite interpreter runs it as it ran the original.

- weights: symmetric int8 (zero point 0, values in [-127, 127]), one scale per
  output class where the file has one per class (per-channel), else one for all
  (``snap`` gives the head so rounded: the in-memory head that the file repeats);
- bias: int32 with scale = input scale x weight scale (what the kernels require);
- logits (the softmax's input): a new scale and zero point covering the new head's
  logits on the frames it was fitted on, with a margin. The softmax's own output
  quantization (1/256) is fixed by the runtime and stays.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.artifacts import sha256_file
from edge_signs.edge.head import SoftmaxHead
from edge_signs.edge.model_files import write_pair
from edge_signs.edge.runtime import PROBS_OUTPUT, Classifier, read_sidecar
from edge_signs.edge.tflite_file import Graph, Head, find_head, read_graph
from edge_signs.errors import EdgeSignsError

LOGITS_MARGIN = 0.25  # the logits' quantized range reaches this share beyond the fitted frames' on each side


@dataclass(frozen=True)
class HeadSite:
    """Where a file's last layer is, and what it holds."""

    blob: bytes
    graph: Graph
    head: Head

    @property
    def per_channel(self) -> bool:
        return self.head.weights.scale is not None and self.head.weights.scale.count > 1

    def original(self) -> SoftmaxHead:
        """The file's own head, dequantized."""
        h, blob = self.head, self.blob
        w = h.weights.values(blob).astype(np.float32)
        scales = h.weights.scales(blob)
        if len(scales):
            w = w * (scales[:, None] if len(scales) > 1 else scales[0])
        if h.bias is None:
            return SoftmaxHead(w, np.zeros(w.shape[0], np.float32))
        b = h.bias.values(blob).astype(np.float32)
        bias_scales = h.bias.scales(blob)
        return SoftmaxHead(w, b * bias_scales if len(bias_scales) else b)


def read_site(model_path: str | Path) -> HeadSite:
    """The last layer of an int8 SIGNS classifier, or a one-line error saying why its head cannot be replaced."""
    model_path = Path(model_path)
    blob = model_path.read_bytes()
    try:
        graph = read_graph(blob)
        outputs = graph.output_names
        probs = outputs.get(PROBS_OUTPUT, graph.outputs[0] if len(graph.outputs) == 1 else -1)
        head = find_head(graph, probs)
    except EdgeSignsError as exc:
        raise EdgeSignsError(f"{model_path}: {exc}") from None
    w, t = head.weights, graph.tensors
    if w.dtype is not np.int8 or head.features.dtype is not np.int8 or head.logits.dtype is not np.int8 or w.data is None:
        raise EdgeSignsError(f"{model_path}: not a full-integer int8 model (its last layer is not int8): teach writes int8 files "
                             f"('edge-signs quantize MODEL.keras --int8')")
    if w.shape != (config.NUM_CLASSES, head.features.shape[-1]):
        raise EdgeSignsError(f"{model_path}: its last layer's weights are {w.shape}, expected ({config.NUM_CLASSES}, features)")
    for tensor in (w, head.bias):
        if tensor is not None and graph.buffer_users.get(tensor.buffer, 0) != 1:
            raise EdgeSignsError(f"{model_path}: its last layer's {tensor.name!r} shares storage with another tensor; cannot be replaced alone")
    shared = [x for x in (w, head.bias, head.logits) if x is not None and sum(1 for o in t if o.quant_table == x.quant_table) != 1]
    if shared:
        raise EdgeSignsError(f"{model_path}: the quantization of {shared[0].name!r} is shared with another tensor; cannot be replaced alone")
    return HeadSite(blob, graph, head)


@dataclass(frozen=True)
class QuantizedHead:
    """A head on a file's int8 grid: what the written file computes, up to the logits' own rounding."""

    weights: np.ndarray  # int8 (classes, features)
    weight_scales: np.ndarray  # float32, one per class (per-channel) or one for all
    bias: np.ndarray  # int32 (classes,)
    bias_scales: np.ndarray  # float32: input scale x weight scale

    def dequantized(self) -> SoftmaxHead:
        per_row = self.weight_scales[:, None] if len(self.weight_scales) > 1 else self.weight_scales[0]
        return SoftmaxHead((self.weights * per_row).astype(np.float32), (self.bias * self.bias_scales).astype(np.float32))


def quantize_head(site: HeadSite, head: SoftmaxHead) -> QuantizedHead:
    """``head`` rounded as the file stores its last layer: symmetric int8 weights, int32 bias at input x weight scale."""
    if site.head.bias is None and np.any(head.bias != 0):
        raise EdgeSignsError("this file's last layer has no bias: fit the head with fit_bias=False")
    weights = np.asarray(head.weights, np.float32)
    peak = np.abs(weights).max(axis=1) if site.per_channel else np.array([np.abs(weights).max()])
    w_scales = (np.maximum(peak, 1e-12) / 127.0).astype(np.float32)
    per_row = w_scales[:, None] if site.per_channel else w_scales[0]
    w_q = np.clip(np.round(weights / per_row), -127, 127).astype(np.int8)
    # The kernels check bias scale == input scale x weight scale (float32 of the double product).
    b_scales = (np.float64(site.head.features.scales(site.blob)[0]) * w_scales.astype(np.float64)).astype(np.float32)
    b_q = np.clip(np.round(np.asarray(head.bias, np.float64) / b_scales), -2**31, 2**31 - 1).astype(np.int32)
    return QuantizedHead(w_q, w_scales, b_q, b_scales)


def snap(site: HeadSite, head: SoftmaxHead) -> SoftmaxHead:
    """``head`` as the written file will hold it (dequantized): the in-memory head whose predictions the file repeats."""
    return quantize_head(site, head).dequantized()


def head_blob(site: HeadSite, head: SoftmaxHead, features: np.ndarray) -> bytes:
    """The file's bytes with ``head`` in place of its last layer; ``features``: frames whose logits set the logits' range."""
    h, q = site.head, quantize_head(site, head)
    logits = q.dequantized().logits(features)
    lo, hi = min(0.0, float(logits.min())), max(0.0, float(logits.max()))
    pad = LOGITS_MARGIN * (hi - lo) or 1.0
    lo, hi = lo - pad, hi + pad
    s_o = (hi - lo) / 255.0
    z_o = int(np.clip(np.round(-128 - lo / s_o), -128, 127))
    out = bytearray(site.blob)
    h.weights.data.write(out, q.weights)
    h.weights.scale.write(out, q.weight_scales)
    if h.bias is not None:
        h.bias.data.write(out, q.bias)
        h.bias.scale.write(out, q.bias_scales)
    h.logits.scale.write(out, np.array([s_o], np.float32))
    h.logits.zero_point.write(out, np.array([z_o], np.int64))
    return bytes(out)


def write_head_file(model_path: str | Path, head: SoftmaxHead, out_path: str | Path, features: np.ndarray, teach: dict) -> dict:
    """``model_path`` with ``head`` as its last layer, written to ``out_path`` with its sidecar; returns the sidecar.

    ``features``: the frames (and mixed-in SIGNS images) the head was fitted on, whose
    logits set the logits' quantization. ``teach``: how it was fitted, recorded in the sidecar.
    """
    model_path, out_path = Path(model_path), Path(out_path)
    site = read_site(model_path)
    blob = head_blob(site, head, features)
    base = read_sidecar(model_path)
    base_ref = {"file": model_path.name, "sha256": sha256_file(model_path)}

    def sidecar(tmp: Path) -> dict:
        clf = Classifier(tmp, check_metadata=False)
        if clf.format != "int8":
            raise EdgeSignsError(f"the written file is {clf.format}, not full-integer int8; nothing was replaced")
        return {**base, "format": "int8", "detected_format": clf.format, "labels": list(config.LABELS),
                "base_model": base_ref, "teach": teach, "tflite_sha256": sha256_file(tmp),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    out_path.parent.mkdir(parents=True, exist_ok=True)
    return write_pair(blob, out_path, "personal", sidecar)
