"""Build a random-weight CLIP text/vision pair in fastembed's cache layout.

No model hub is reachable here, so tests and benchmarks use CLIP models with the real
architecture (transformers' CLIPTextModelWithProjection / CLIPVisionModelWithProjection) and
random weights, exported to ONNX and laid out exactly as fastembed's Hugging Face cache expects:

    <out>/models--Qdrant--clip-ViT-B-32-text/refs/main            (revision, no newline)
    <out>/models--Qdrant--clip-ViT-B-32-text/snapshots/<rev>/...  (model.onnx, tokenizer files)
    <out>/models--Qdrant--clip-ViT-B-32-vision/...                (model.onnx, preprocessor_config.json)

so that `TextEmbedding("Qdrant/clip-ViT-B-32-text", cache_dir=<out>, local_files_only=True)` loads
them through fastembed's normal code path.

Sizes:
  tiny  2 layers, width 16, projection 512, byte-level vocabulary: <1 MB, embeds in milliseconds.
  full  ViT-B/32 (vision 12x768, text 12x512, projection 512) with CLIP's real BPE vocabulary
        (taken from the open_clip_torch wheel): the real FLOPs, for benchmarks.

Run with the model-building toolchain (torch + transformers + onnx), not the gateway's venv:
    .venv-vllm/bin/python -m serving.testmodels.clip --size tiny --out models/clip-tiny
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from serving.testmodels.export import export_onnx

# The builder needs torch + transformers only. Hide torch's companion packages from transformers:
# wheels built for another torch fail at import ("operator torchvision::nms does not exist",
# "Could not load this library: _torchaudio.abi3.so") and transformers imports them eagerly
# whenever they are installed. `None` in sys.modules makes importlib.util.find_spec report them missing.
for _companion in ("torchvision", "torchaudio", "torchcodec"):
    sys.modules.setdefault(_companion, None)  # type: ignore[arg-type]

REVISION = "random-weights"
TEXT_REPO = "Qdrant/clip-ViT-B-32-text"
VISION_REPO = "Qdrant/clip-ViT-B-32-vision"
MAX_TOKENS = 77  # CLIP's context length; fastembed truncates to tokenizer_config's model_max_length
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# CLIP's pre-tokenizer split: contractions, letter runs, single digits, other non-space runs.
_CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "text": {"hidden_size": 16, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        "vision": {
            "hidden_size": 16,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        "real_vocab": False,
    },
    "full": {
        # transformers' defaults are ViT-B/32 (text 512x12x8, vision 768x12x12, patch 32).
        "text": {},
        "vision": {},
        "real_vocab": True,
    },
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map (what ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _vocab_and_merges(real_vocab: bool) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary, built as open_clip's SimpleTokenizer builds it.

    Without the real merges the vocabulary is the 512 byte symbols (bare and `</w>`-suffixed) plus the
    two specials: every text still tokenizes (to characters), which is all a tiny test model needs.
    """
    base = list(_bytes_to_unicode().values())
    tokens = base + [symbol + "</w>" for symbol in base]
    merges: list[tuple[str, str]] = []
    if real_vocab:
        # The open_clip_torch wheel ships CLIP's BPE file (installed --no-deps by the Makefile). Locate it
        # without importing the package, whose import pulls in torchvision.
        import importlib.util

        spec = importlib.util.find_spec("open_clip")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("open_clip_torch is missing: pip install --no-deps open-clip-torch==3.3.0")
        bpe_path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
        lines = gzip.decompress(bpe_path.read_bytes()).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]  # type: ignore[misc]
        tokens += ["".join(merge) for merge in merges]
    tokens += [BOS, EOS]
    return {token: index for index, token in enumerate(tokens)}, merges


def build_tokenizer(real_vocab: bool) -> Any:
    """A `tokenizers` tokenizer that reproduces CLIP's (exactly, with the real vocabulary)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab, merges = _vocab_and_merges(real_vocab)
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            unk_token=EOS,
            fuse_unk=False,
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} {EOS} $B {EOS}",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _snapshot(out: Path, repo: str) -> Path:
    entry = out / ("models--" + repo.replace("/", "--"))
    if entry.exists():
        shutil.rmtree(entry)
    (entry / "refs").mkdir(parents=True)
    # fastembed reads refs/main verbatim: a trailing newline would name a missing snapshot.
    (entry / "refs" / "main").write_text(REVISION)
    snapshot = entry / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    return snapshot


def _export(model: Any, args: tuple[Any, ...], path: Path, inputs: list[str], output: str) -> None:
    import torch

    axes = {name: {0: "batch"} for name in inputs}
    if "input_ids" in inputs:
        axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[output] = {0: "batch"}
    with torch.no_grad():
        export_onnx(model, args, path, input_names=inputs, output_names=[output], dynamic_axes=axes,
                    opset_version=17)


def build_text(out: Path, size: str, seed: int) -> Path:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    spec = SIZES[size]
    tokenizer = build_tokenizer(spec["real_vocab"])
    vocab_size = tokenizer.get_vocab_size()
    bos_id, eos_id = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=512,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        **spec["text"],
    )
    torch.manual_seed(seed)
    model = CLIPTextModelWithProjection(config).eval()

    snapshot = _snapshot(out, TEXT_REPO)
    ids = torch.tensor([tokenizer.encode("a photo of a cat").ids], dtype=torch.int64)
    mask = torch.ones_like(ids)

    class _Text(torch.nn.Module):
        """Only `text_embeds`, so it is the graph's first (and only) output, as fastembed expects."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).text_embeds

    _export(_Text(model), (ids, mask), snapshot / "model.onnx", ["input_ids", "attention_mask"], "text_embeds")

    tokenizer.save(str(snapshot / "tokenizer.json"))
    (snapshot / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": MAX_TOKENS,
                "bos_token": BOS,
                "eos_token": EOS,
                "pad_token": EOS,
                "unk_token": EOS,
                "tokenizer_class": "CLIPTokenizer",
            },
            indent=2,
        )
    )
    (snapshot / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}, indent=2)
    )
    (snapshot / "config.json").write_text(config.to_json_string())
    return snapshot


def build_vision(out: Path, size: str, seed: int) -> Path:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    spec = SIZES[size]
    config = CLIPVisionConfig(image_size=224, patch_size=32, projection_dim=512, **spec["vision"])
    torch.manual_seed(seed + 1)
    model = CLIPVisionModelWithProjection(config).eval()

    class _Vision(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return self.inner(pixel_values=pixel_values).image_embeds

    snapshot = _snapshot(out, VISION_REPO)
    pixels = torch.randn(1, 3, 224, 224)
    _export(_Vision(model), (pixels,), snapshot / "model.onnx", ["pixel_values"], "image_embeds")
    # `size` and `crop_size` must be dicts: fastembed raises TypeError on a bare int.
    (snapshot / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "do_resize": True,
                "size": {"shortest_edge": 224},
                "resample": 3,
                "do_center_crop": True,
                "crop_size": {"height": 224, "width": 224},
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "do_convert_rgb": True,
            },
            indent=2,
        )
    )
    (snapshot / "config.json").write_text(config.to_json_string())
    return snapshot


def build(out: Path, size: str, seed: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    build_text(out, size, seed)
    build_vision(out, size, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), required=True)
    parser.add_argument("--out", type=Path, required=True, help="fastembed cache dir to write into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.size, args.seed)
    print(f"built {args.size} CLIP pair in {args.out}")


if __name__ == "__main__":
    main()
