"""Train the tiny CLAP test model in tests/assets/tiny-clap (a few minutes on 2 cores).

The result is a real ``transformers.ClapModel`` (fused HTSAT audio tower, RoBERTa
text tower, a byte-level BPE tokenizer trained on its captions) with a small
config. It knows six synthetic sounds from ``earmark.synth`` and nothing else:
it is a test fixture, never a measure of accuracy.

    python scripts/make_tiny_clap.py [--out tests/assets/tiny-clap] [--steps 300]

Deterministic: same torch/transformers versions and seed give the same weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer

from earmark import synth

TEMPLATES = (
    "This is a sound of {}.",
    "the sound of {}",
    "{}",
    "a recording of {}",
)
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
CLASSES = list(synth.SOUNDS)


def tiny_config(vocab_size: int) -> ClapConfig:
    audio = dict(
        enable_fusion=True,
        fusion_type="aff_2d",
        patch_embeds_hidden_size=16,
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 2, 2, 4],
        hidden_size=128,
        projection_dim=32,
        mlp_ratio=2.0,
        num_hidden_layers=4,
        hidden_dropout_prob=0.0,
    )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,
        projection_dim=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ClapConfig(audio_config=audio, text_config=text, projection_dim=32, logit_scale_init_value=30.0)


def captions() -> list[tuple[int, str]]:
    return [
        (c, template.format(word))
        for c, name in enumerate(CLASSES)
        for word in synth.SYNONYMS[name]
        for template in TEMPLATES
    ]


def train_tokenizer(texts: list[str], out: Path) -> RobertaTokenizer:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=400, min_frequency=1, special_tokens=SPECIALS, show_progress=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        vocab = json.loads(Path(tmp, "vocab.json").read_text())
        merges = [
            tuple(line.split(" "))
            for line in Path(tmp, "merges.txt").read_text().splitlines()[1:]
            if line.strip()
        ]
    tok = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=64)
    tok.save_pretrained(out)
    return tok


def make_features(fe: ClapFeatureExtractor, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One log-mel (1001 x 64) per clip; the fused model sees it 4 times, as for any clip <= 10 s."""
    rng = np.random.default_rng(seed)
    mels, labels = [], []
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            seconds = float(rng.uniform(0.5, 10.0))
            wave = synth.make(name, seconds, seed=seed * 10_000 + i)
            feats = fe(wave, sampling_rate=fe.sampling_rate, return_tensors="np")
            mels.append(feats["input_features"][0, 0].astype(np.float32))
            labels.append(c)
    return np.stack(mels), np.asarray(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/assets/tiny-clap"
    )
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()

    build = Path(tempfile.mkdtemp(prefix="tiny-clap-"))
    caps = captions()
    tokenizer = train_tokenizer([t for _, t in caps], build)
    fe = ClapFeatureExtractor(truncation="fusion", padding="repeatpad")
    fe.save_pretrained(build)
    model = ClapModel(tiny_config(len(tokenizer)))

    mels, labels = make_features(fe, args.per_class, args.seed)
    print(f"features: {mels.shape} in {time.monotonic() - started:.0f}s", flush=True)
    cap_classes = torch.tensor([c for c, _ in caps])
    tokens = tokenizer([t for _, t in caps], padding=True, return_tensors="pt")

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps, pct_start=0.1)
    rng = np.random.default_rng(args.seed)
    model.train()
    batch = 24
    for step in range(args.steps):
        idx = rng.choice(len(mels), size=batch, replace=False)
        x = torch.from_numpy(mels[idx])[:, None].expand(-1, 4, -1, -1).contiguous()
        x = x + torch.randn_like(x[:, :1]) * 0.5  # small jitter in dB so the model does not memorise clips
        audio = model.get_audio_features(input_features=x, is_longer=torch.ones(batch, 1, dtype=torch.bool))
        text = model.get_text_features(**tokens)
        logits = audio.pooler_output @ text.pooler_output.T * model.logit_scale_a.exp()
        # every caption of the right class is a positive: maximise their summed probability
        target = torch.from_numpy(labels[idx])[:, None] == cap_classes[None, :]
        logp = logits.log_softmax(-1)
        loss_a = -(torch.logsumexp(logp.masked_fill(~target, -1e9), -1)).mean()
        # text side: each caption should pick audio of its own class from the batch
        tl = (text.pooler_output @ audio.pooler_output.T * model.logit_scale_t.exp()).log_softmax(-1)
        loss_t = -(torch.logsumexp(tl.masked_fill(~target.T, -1e9), -1))
        loss = loss_a + loss_t[target.any(0)].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale_a.clamp_(0, np.log(100))
            model.logit_scale_t.clamp_(0, np.log(100))
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.3f} ({time.monotonic() - started:.0f}s)", flush=True)

    model.eval()
    model.save_pretrained(build)
    (build / "README.md").write_text(README)
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(build, args.out)
    shutil.rmtree(build)
    print(f"saved to {args.out} in {time.monotonic() - started:.0f}s")


README = """# tiny-clap: a test fixture, not a model

A real `transformers.ClapModel` (fused HTSAT + RoBERTa, same classes as
`laion/clap-htsat-fused`) with a tiny config, trained by
`scripts/make_tiny_clap.py` on synthetic sounds from `earmark.synth`:

    beep, hum, noise, clicks, chirp, silence

(plus the synonyms listed in `earmark.synth.SYNONYMS`). It knows nothing else.
Tests load it through the same `ClapModel.from_pretrained` path as real
checkpoints. Its scores say nothing about the accuracy of CLAP or earmark.

Rebuild: `python scripts/make_tiny_clap.py`.

Rebuilding takes about 4 minutes on 2 cores; with torch 2.13.0 and
transformers 5.23.0 it is bit-identical (same sha256 of model.safetensors on
two runs).
"""

if __name__ == "__main__":
    main()
