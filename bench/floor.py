"""The machine's floor for one 10 s window: audio-encoder FLOPs / measured matmul peak.

    PYTHONPATH=src python bench/floor.py [--model DIR] [--threads 2]

Peak: the best of several timed square matmuls (1024 and 2048) on ``--threads`` threads, the cores
the model uses, with every library present (torch, ONNX Runtime's MatMul, OpenVINO's MatMul
with f32 pinned, numpy's BLAS through threadpoolctl) for fp32, and torch for bf16 where the CPU runs it. The
best library counts: on some CPUs one library's GEMM is far below the others'
(a floor from the slowest one would not be a floor). FLOPs: one window
through the fused audio tower (features excluded), counted by torch's
``FlopCounterMode`` (2 per multiply-add), cached in ``bench/out/floor-flops.json``.
``floor ms per window = FLOPs / fp32 peak``: no exact fp32 runtime can beat it on
these cores, so every benchmark states its figures as a ratio to it (comparable
between machines, unlike milliseconds). A busy machine lowers the peak too, so
take the floor in the same run as the figures it divides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "src"), str(HERE)]

from host import cpu_name, uptime  # noqa: E402


def matmul_peak_gflops(dtype: str, threads: int, n: int = 1024, seconds: float = 1.5) -> float:
    """Best GFLOP/s of an n x n matmul on ``threads`` threads (``dtype``: float32 or bfloat16)."""
    import torch

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    a = torch.randn(n, n).to(dt)
    b = torch.randn(n, n).to(dt)
    out = torch.empty(n, n, dtype=dt)
    return _best_gflops(lambda: torch.matmul(a, b, out=out), n, seconds)


def _best_gflops(run: Any, n: int, seconds: float) -> float:
    for _ in range(3):
        run()
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def ort_peak_gflops(threads: int, n: int = 1024, seconds: float = 1.5) -> float:
    """Best GFLOP/s of an n x n fp32 MatMul in ONNX Runtime on ``threads`` threads (0 if absent)."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return 0.0
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.standard_normal((n, n), np.float32), "b": rng.standard_normal((n, n), np.float32)}
    return _best_gflops(lambda: sess.run(None, feed), n, seconds)


def openvino_peak_gflops(threads: int, n: int = 1024, seconds: float = 1.5) -> float:
    """Best GFLOP/s of an n x n MatMul in OpenVINO (f32 pinned) on ``threads`` threads (0 if absent)."""
    try:
        import numpy as np
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return 0.0
    a = ops.parameter([n, n], np.float32, name="a")
    b = ops.parameter([n, n], np.float32, name="b")
    model = ov.Model([ops.matmul(a, b, False, False)], [a, b], "mm")
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    rng = np.random.default_rng(0)
    feed = {0: rng.standard_normal((n, n), np.float32), 1: rng.standard_normal((n, n), np.float32)}
    return _best_gflops(lambda: request.infer(feed), n, seconds)


def numpy_peak_gflops(threads: int, n: int = 1024, seconds: float = 1.5) -> float:
    """Best GFLOP/s of an n x n fp32 matmul with numpy's BLAS on ``threads`` threads (0 if unsure)."""
    try:
        import numpy as np
        from threadpoolctl import threadpool_limits
    except ImportError:
        return 0.0  # without it numpy's thread count is unknown
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), np.float32)
    b = rng.standard_normal((n, n), np.float32)
    out = np.empty((n, n), np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        return _best_gflops(lambda: np.matmul(a, b, out=out), n, seconds)


def audio_gflops(model: Path) -> float:
    """GFLOPs of one 10 s window through the audio tower (projection included), cached per model."""
    cache = HERE / "out" / "floor-flops.json"
    key = str(model.resolve())
    known: dict[str, float] = json.loads(cache.read_text()) if cache.is_file() else {}
    if key in known:
        return known[key]
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import ClapModel

    clap = ClapModel.from_pretrained(str(model)).eval()
    fused = bool(getattr(clap.config.audio_config, "enable_fusion", False))
    feats = torch.zeros(1, 4 if fused else 1, 1001, 64)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        clap.get_audio_features(input_features=feats, is_longer=torch.ones(1, 1, dtype=torch.bool))
    gflops = counter.get_total_flops() / 1e9
    known[key] = gflops
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known, indent=1))
    return gflops


def cpu_flags() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    want = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16")
    return ", ".join(f for f in want if f" {f}" in flags) or "none of avx2/avx512/amx"


def floor(model: Path, threads: int) -> dict[str, Any]:
    """The floor figures for ``model`` on ``threads`` threads, with the machine and load."""
    load_before = os.getloadavg()[0]
    # two sizes: some GEMMs only reach their peak on larger matrices, and a floor must be a lower bound
    sizes = (1024, 2048)
    by_library = {
        "torch": max(matmul_peak_gflops("float32", threads, n) for n in sizes),
        "onnxruntime": max(ort_peak_gflops(threads, n) for n in sizes),
        "numpy": max(numpy_peak_gflops(threads, n) for n in sizes),
        "openvino": max(openvino_peak_gflops(threads, n) for n in sizes),
    }
    fp32 = max(by_library.values())
    try:
        bf16 = matmul_peak_gflops("bfloat16", threads)
    except RuntimeError:
        bf16 = 0.0
    gflops = audio_gflops(model)
    return {
        "cpu": cpu_name(),
        "flags": cpu_flags(),
        "threads": threads,
        "fp32_gflops": round(fp32, 1),
        "fp32_gflops_by_library": {k: round(v, 1) for k, v in by_library.items() if v},
        "bf16_gflops": round(bf16, 1),
        "audio_gflops_per_window": round(gflops, 2),
        "floor_ms": round(gflops / fp32 * 1000, 1),
        "floor_bf16_ms": round(gflops / bf16 * 1000, 1) if bf16 else None,
        "load": (round(load_before, 2), round(os.getloadavg()[0], 2)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.model is None:
        from fullsize import build_fullsize

        args.model = build_fullsize()
    print(f"load before: {uptime()}", file=sys.stderr)
    f = floor(args.model, args.threads)
    print(f"load after: {uptime()}", file=sys.stderr)
    if args.json:
        print(json.dumps(f))
        return
    print(
        f"{f['cpu']} ({f['flags']}), {f['threads']} threads: matmul peak fp32 {f['fp32_gflops']} GFLOP/s"
        f" (by library: {f['fp32_gflops_by_library']}),"
        f" bf16 {f['bf16_gflops']} GFLOP/s; audio tower {f['audio_gflops_per_window']} GFLOP per 10 s window"
        f" -> floor {f['floor_ms']} ms per window fp32 ({f['floor_bf16_ms']} ms bf16); load {f['load']}"
    )


if __name__ == "__main__":
    main()
