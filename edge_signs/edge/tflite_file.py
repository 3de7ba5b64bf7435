"""Reading a TFLite file's tensors, and overwriting a classifier's last layer in place, with the standard library.

A .tflite file is a FlatBuffer (the TFLite schema, ``schema.fbs``). Only the few
fields the personal head needs are read: the first subgraph's tensors, operators
and outputs, the signature's output names, and where each constant's bytes lie.
Writing never moves anything: the new weights, bias and quantization parameters
have the sizes of the old ones, so they are written over them byte for byte and
the result is as valid as the original, for any TFLite interpreter.

Field numbers are the schema's slots (``table Tensor { shape; type; buffer; name;
quantization; ... }`` is 0, 1, 2, 3, 4, ...).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from edge_signs.errors import EdgeSignsError

# TensorType and BuiltinOperator codes of schema.fbs
TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
FULLY_CONNECTED, SOFTMAX, QUANTIZE = 9, 25, 114


class Table:
    """One FlatBuffer table: fields by slot number, read from the file's bytes."""

    def __init__(self, buf, pos: int):
        self.buf, self.pos = buf, pos
        vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self._vtable, self._vsize = vtable, struct.unpack_from("<H", buf, vtable)[0]

    def _field(self, slot: int) -> int:
        entry = 4 + 2 * slot
        return struct.unpack_from("<H", self.buf, self._vtable + entry)[0] if entry < self._vsize else 0

    def scalar(self, slot: int, fmt: str, default=0):
        off = self._field(slot)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def _target(self, slot: int) -> int | None:
        off = self._field(slot)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, slot: int) -> Table | None:
        at = self._target(slot)
        return None if at is None else Table(self.buf, at)

    def vector(self, slot: int) -> tuple[int, int]:
        """(offset of the first element, number of elements); (0, 0) when absent."""
        at = self._target(slot)
        return (0, 0) if at is None else (at + 4, struct.unpack_from("<I", self.buf, at)[0])

    def array(self, slot: int, dtype) -> np.ndarray:
        start, n = self.vector(slot)
        return np.frombuffer(self.buf, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=start) if n else np.zeros(0, dtype)

    def tables(self, slot: int) -> list[Table]:
        start, n = self.vector(slot)
        return [Table(self.buf, start + 4 * i + struct.unpack_from("<I", self.buf, start + 4 * i)[0]) for i in range(n)]

    def string(self, slot: int) -> str:
        start, n = self.vector(slot)
        return bytes(self.buf[start:start + n]).decode("utf-8", "replace")


@dataclass(frozen=True)
class Span:
    """Where an array lies in the file: byte offset, element count, element type."""

    offset: int
    count: int
    dtype: type

    def read(self, blob) -> np.ndarray:
        return np.frombuffer(blob, dtype=np.dtype(self.dtype).newbyteorder("<"), count=self.count, offset=self.offset).astype(self.dtype)

    def write(self, out: bytearray, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=np.dtype(self.dtype).newbyteorder("<")).reshape(-1)
        if values.size != self.count:
            raise ValueError(f"{values.size} values for a span of {self.count}")
        out[self.offset:self.offset + values.nbytes] = values.tobytes()


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type
    buffer: int
    data: Span | None  # the constant's bytes in the file; None for activations
    scale: Span | None  # quantization scales (one, or one per channel)
    zero_point: Span | None
    quant_table: int  # position of its quantization table (0: none): tables shared by tensors are refused

    def scales(self, blob) -> np.ndarray:
        return self.scale.read(blob) if self.scale else np.zeros(0, np.float32)

    def zero_points(self, blob) -> np.ndarray:
        return self.zero_point.read(blob) if self.zero_point else np.zeros(0, np.int64)

    def values(self, blob) -> np.ndarray:
        if self.data is None:
            raise EdgeSignsError(f"tensor {self.name!r} holds no constant data")
        return self.data.read(blob).reshape(self.shape)


@dataclass(frozen=True)
class Operator:
    code: int  # BuiltinOperator
    inputs: tuple[int, ...]  # tensor indices; -1: an optional input left out
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    """The first subgraph of a TFLite file: what the runtime runs."""

    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    output_names: dict[str, int]  # the serving signature's output name -> tensor index
    buffer_users: dict[int, int]  # buffer index -> how many tensors use it

    def producer(self, tensor: int) -> Operator | None:
        return next((op for op in self.operators if tensor in op.outputs), None)


def _tensor(index: int, t: Table, buffers: list[Table], blob) -> Tensor:
    dtype = TENSOR_TYPES.get(t.scalar(1, "b"))
    shape = tuple(int(x) for x in t.array(0, np.int32))
    buffer = t.scalar(2, "I")
    data = None
    if 0 < buffer < len(buffers):
        start, n = buffers[buffer].vector(0)
        if n and dtype is not None:
            data = Span(start, n // np.dtype(dtype).itemsize, dtype)
    scale = zero_point = None
    q = t.table(4)
    if q is not None:
        start, n = q.vector(2)
        scale = Span(start, n, np.float32) if n else None
        start, n = q.vector(3)
        zero_point = Span(start, n, np.int64) if n else None
    return Tensor(index, t.string(3), shape, dtype, buffer, data, scale, zero_point, q.pos if q is not None else 0)


def read_graph(blob) -> Graph:
    """The tensors, operators and outputs of a .tflite file's bytes (or a memory map of them)."""
    if len(blob) < 8 or bytes(blob[4:8]) != b"TFL3":
        raise EdgeSignsError("not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        model = Table(blob, struct.unpack_from("<I", blob, 0)[0])
        codes = [max(c.scalar(0, "b"), c.scalar(3, "i")) for c in model.tables(1)]
        subgraph = model.tables(2)[0]
        buffers = model.tables(4)
        tensors = [_tensor(i, t, buffers, blob) for i, t in enumerate(subgraph.tables(0))]
        operators = [Operator(codes[op.scalar(0, "I")], tuple(int(i) for i in op.array(1, np.int32)), tuple(int(i) for i in op.array(2, np.int32)))
                     for op in subgraph.tables(3)]
        names = {}
        for signature in model.tables(7)[:1]:
            names = {m.string(0): m.scalar(1, "I") for m in signature.tables(1)}
    except (struct.error, IndexError, ValueError) as exc:
        raise EdgeSignsError(f"a damaged TFLite file ({exc})") from None
    users: dict[int, int] = {}
    for t in tensors:
        users[t.buffer] = users.get(t.buffer, 0) + 1
    return Graph(tensors, operators, tuple(int(i) for i in subgraph.array(1, np.int32)), tuple(int(i) for i in subgraph.array(2, np.int32)), names, users)


@dataclass(frozen=True)
class Head:
    """The classifier's last layer: features -> FULLY_CONNECTED (weights, bias) -> logits -> SOFTMAX."""

    features: Tensor
    weights: Tensor
    bias: Tensor | None  # a converter leaves out an all-zero bias
    logits: Tensor


def find_head(graph: Graph, probs_output: int) -> Head:
    """The FULLY_CONNECTED layer whose softmax gives the output ``probs_output`` (through a final QUANTIZE, if any)."""
    op = graph.producer(probs_output)
    if op is not None and op.code == QUANTIZE:
        op = graph.producer(op.inputs[0])
    if op is None or op.code != SOFTMAX:
        raise EdgeSignsError("its output is not a softmax: not a classifier whose last layer can be replaced")
    fc = graph.producer(op.inputs[0])
    if fc is None or fc.code != FULLY_CONNECTED:
        raise EdgeSignsError("its softmax does not follow a fully connected layer: not a classifier whose last layer can be replaced")
    t = graph.tensors
    bias = t[fc.inputs[2]] if len(fc.inputs) > 2 and fc.inputs[2] >= 0 else None
    return Head(t[fc.inputs[0]], t[fc.inputs[1]], bias, t[fc.outputs[0]])
