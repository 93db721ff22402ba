"""Build the tiny random-weight vision-language model that the test suite serves with real vLLM.

Why this model: Llama 3.2 Vision (Mllama) is served only by vLLM <= 0.10.2, which needs a GPU, and
no weights can be downloaded here. vLLM 0.32 (CPU) serves Idefics3 (the SmolVLM architecture) and its
module imports without torchvision, so a ~0.23 M-parameter Idefics3ForConditionalGeneration with
seeded random weights exercises the real server end to end: image preprocessing, image-token
expansion, chat template, sampling, streaming and the OpenAI API.

Properties the tests rely on (assert on these, never on the words):
- deterministic: weights come from a fixed seed, so greedy answers repeat across restarts;
- image-dependent: different pixels give different answers;
- answers always run to ``max_tokens`` (finish_reason "length"), because the LM-head rows of the
  special tokens are zeroed and no other token can end the answer; ``stop=[...]`` gives "stop".

The output is an ordinary Hugging Face folder (config.json, model.safetensors, tokenizer.json,
preprocessor/processor configs, chat template). It is written to a temporary sibling folder and
renamed into place, with a ``.built`` marker last, so an interrupted build never looks complete.

Run with the vLLM venv's python (it has torch, transformers and tokenizers):
    .venv-vllm/bin/python serving/testmodels/tiny_vlm.py --out models/tiny-vlm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SEED = 20241124
IMAGE_SIZE = 64  # pixels per side: the image processor resizes every image to this
PATCH_SIZE = 8  # (64 / 8)^2 = 64 patches; pixel shuffle x2 -> 16 image tokens per image
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
MAX_POSITIONS = 2048  # matches --max-model-len in serving/profiles/tiny.toml

# Special tokens. The Idefics3 processor looks these up by name; <row_i_col_j> exist for image
# splitting (disabled here) but the processor resolves their ids at construction time.
BOS, EOS, PAD, UNK = "<|begin_of_text|>", "<end_of_utterance>", "<pad>", "<unk>"
IMAGE, FAKE_AROUND_IMAGE, GLOBAL_IMAGE = "<image>", "<fake_token_around_image>", "<global-img>"
ROW_COL = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS, IMAGE, FAKE_AROUND_IMAGE, GLOBAL_IMAGE, *ROW_COL]

# A word-level vocabulary: enough English for readable-ish random answers, plus the chat roles.
_WORDS_TEXT = """
user assistant system the a an and or but if then else of to in on at by for with from about as into
is are was were be been being have has had do does did can could will would should may might must
i you he she it we they me him her us them my your his its our their this that these those there here
what which who whom whose when where why how all any both each few more most other some such no nor not
only own same so than too very just now one two three four five six seven eight nine ten zero first
last next image picture photo diagram chart graph table figure page document text word line shape
color colour red green blue yellow black white gray grey orange purple pink brown dark light bright
big small large tiny long short tall wide round square circle triangle box arrow left right top bottom
up down middle center centre above below near far inside outside over under behind front back side
cat dog bird car house tree sky sun moon water road city person people man woman child hand face eye
see look show shows shown describe describes find found read write make made take give say said tell
think know want need use used like likes seem seems appear appears contain contains include includes
yes maybe please thanks hello answer question value number count total sum label title axis legend
data model vision language token tokens input output result results test tests example examples
good bad new old same different simple complex clear blurry sharp empty full open closed
"""
WORDS = _WORDS_TEXT.split()
PUNCTUATION = list(".,:;!?'\"()[]{}-+*/=<>%$#@&_")
DIGITS = list("0123456789")
LETTERS = list("abcdefghijklmnopqrstuvwxyz")

# Accepts plain-string content and OpenAI content-part lists (text / image / image_url parts), so
# it works whichever content format vLLM decides to render with.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}"
    " {{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %} {{ part['text'] }}"
    "{% elif part['type'] in ['image', 'image_url', 'input_image'] %}<image>"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def vocabulary() -> list[str]:
    """Special tokens first (ids 0..N-1), then the words; duplicates removed, order stable."""
    seen: dict[str, None] = {}
    for token in [*SPECIAL_TOKENS, *WORDS, *PUNCTUATION, *DIGITS, *LETTERS]:
        seen.setdefault(token, None)
    return list(seen)


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    # The WordPiece decoder joins tokens with spaces, which also works for incremental decoding.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    core.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_POSITIONS,
        chat_template=CHAT_TEMPLATE,
        add_bos_token=False,  # the chat template writes BOS itself
    )


def build_processor(tokenizer):  # -> transformers.Idefics3Processor
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    # The PIL backend: .venv-vllm has no torchvision (see the Makefile's guard).
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=IMAGE_SEQ_LEN,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer):  # -> transformers.Idefics3ForConditionalGeneration
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Idefics3Config(
        image_token_id=ids[IMAGE],
        pad_token_id=ids[PAD],
        scale_factor=SCALE_FACTOR,
        tie_word_embeddings=False,
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,  # head_dim 32: a size vLLM's CPU attention kernels support
            "num_key_value_heads": 2,
            "max_position_embeddings": MAX_POSITIONS,
            "rms_norm_eps": 1e-5,
            "bos_token_id": ids[BOS],
            "eos_token_id": ids[EOS],
            "pad_token_id": ids[PAD],
            "tie_word_embeddings": False,
        },
    )
    config.bos_token_id, config.eos_token_id = ids[BOS], ids[EOS]
    torch.manual_seed(SEED)
    model = Idefics3ForConditionalGeneration(config).to(torch.float32).eval()
    with torch.no_grad():
        # Larger-than-default random weights so that the image visibly changes the greedy answer.
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "norm" not in name:
                param.normal_(0.0, 0.2)
        # No special token can ever be generated: answers run to max_tokens.
        head = model.get_output_embeddings()
        head.weight[sorted(ids.values())] = 0.0
        if head.bias is not None:
            head.bias[sorted(ids.values())] = -1e4
    model.generation_config.bos_token_id = ids[BOS]
    model.generation_config.eos_token_id = ids[EOS]
    model.generation_config.pad_token_id = ids[PAD]
    return model


def build(out: Path) -> Path:
    """Write the model folder to ``out`` (replacing it) and return it."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tokenizer = build_tokenizer()
        processor = build_processor(tokenizer)
        model = build_model(tokenizer)
        from transformers.utils import logging as transformers_logging

        # Its one-shard progress bar reads as a broken line in make's output and a log.
        transformers_logging.disable_progress_bar()
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # transformers 5 nests the image processor in processor_config.json; older loaders (and
        # other tools) look for preprocessor_config.json, so write that too.
        processor.image_processor.save_pretrained(staging)
        for path in [staging, *staging.iterdir()]:  # mkdtemp and safetensors create private modes
            path.chmod(0o755 if path.is_dir() else 0o644)
        (staging / ".built").write_text(
            json.dumps({"seed": SEED, "params": sum(p.numel() for p in model.parameters())}) + "\n"
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the tiny random-weight Idefics3 test model (seeded, deterministic, ~1 MB) "
        "in Hugging Face format. Needs torch, transformers and tokenizers (use .venv-vllm/bin/python).",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("models/tiny-vlm"), help="output folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is made here; never reach the Hub
    from transformers.utils import logging as hf_logging

    # Idefics3Config warns about its own default pad id while building the sub-configs; noise.
    hf_logging.set_verbosity_error()
    started = time.monotonic()
    out = build(args.out)
    info = json.loads((out / ".built").read_text())
    print(f"built {out} ({info['params']:,} parameters) in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
