"""A full-size clap-htsat-fused with random weights, built from its config (no download).

Speed and memory do not depend on weight values, so benchmarks use this model;
its scores mean nothing and are never reported as accuracy. The tokenizer is
the tiny test model's byte-level BPE (the real RoBERTa vocabulary cannot be
downloaded here); it splits English prompts into somewhat more tokens than
RoBERTa's, so text-encoder timings are slightly pessimistic.

    python bench/fullsize.py [--out bench/out/clap-htsat-fused-random]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "out" / "clap-htsat-fused-random"
TINY = ROOT / "tests" / "assets" / "tiny-clap"


def build_fullsize(out: Path = DEFAULT_OUT, *, seed: int = 0) -> Path:
    """Write the random-weight full-size model folder once; reuse it afterwards."""
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(seed)
    model = ClapModel(ClapConfig(audio_config={"enable_fusion": True})).eval()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    ClapFeatureExtractor(truncation="fusion", padding="repeatpad").save_pretrained(tmp)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TINY / f, tmp / f)
    tmp.rename(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    print(build_fullsize(ap.parse_args().out))
