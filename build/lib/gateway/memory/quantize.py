"""int8 copies of ONNX encoders (CLIP's two, the sentence model), built from the fp32 model with
onnxruntime's dynamic quantization.

The recipe (RECIPE), as measured on full-size CLIP and the genuine all-MiniLM-L6-v2:
- Weights int8 (QInt8), one scale per output channel; activations are quantized to uint8 at each call.
  uint8 x int8 is the product onnxruntime's int8 kernels (VNNI, AVX2) run fast; uint8 weights ran
  much slower. One scale per whole matrix kept the trained sentence model's vectors markedly further
  from fp32.
- Only MatMul nodes whose weight is a constant: the transformer's projections and MLPs, nearly all
  the work.
- Left fp32: the last of those MatMuls, next to the output (CLIP's projection, the sentence model's
  last feed-forward layer): its rounding error goes straight into the vector, for a small share of
  the work. The vision patch-embedding Conv (ConvInteger ran slower than
  fp32 there); token and position embedding lookups; LayerNorm, Softmax, and attention's
  activation-by-activation MatMuls (dynamic quantization does not touch them).

Layout: `<model dir>/int8/` holds the int8 model under the fp32 one's file name and a copy of every
other file beside it (tokenizer, preprocessor config), so fastembed loads the folder like the original
(`specific_model_path`). `int8.json` there names the recipe and the fp32 file it was built from; a
changed model or recipe is rebuilt. Each file is replaced atomically and the stamp is written last,
so processes starting together may both build, and none reads half a file.

    python -m gateway.memory.quantize clip --cache-dir models/clip-full   # what `make memory-models` runs
    python -m gateway.memory.quantize sentence --cache-dir models/text
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RECIPE = "dynamic int8: QInt8 per-channel weights, constant-weight MatMuls but the last (v1)"
INT8_DIR = "int8"
STAMP = "int8.json"
MODEL_FILE = "model.onnx"

log = logging.getLogger("visionrag.memory.quantize")


def int8_dir(model_dir: Path) -> Path:
    return model_dir / INT8_DIR


def _source_stamp(source: Path) -> dict[str, object]:
    stat = source.stat()  # through a hub cache's symlink: the blob itself
    return {"recipe": RECIPE, "source": source.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def is_built(model_dir: Path, model_file: str = MODEL_FILE) -> bool:
    stamp = int8_dir(model_dir) / STAMP
    try:
        return json.loads(stamp.read_text()) == _source_stamp(model_dir / model_file)
    except (OSError, ValueError):
        return False


def ensure_int8(model_dir: Path, model_file: str = MODEL_FILE) -> Path:
    """The int8 copy of the model in `model_dir`, built now unless an up-to-date one is there."""
    if not is_built(model_dir, model_file):
        build_int8(model_dir, model_file)
    return int8_dir(model_dir)


def build_int8(model_dir: Path, model_file: str = MODEL_FILE) -> Path:
    source = model_dir / model_file
    target = int8_dir(model_dir)
    (target / model_file).parent.mkdir(parents=True, exist_ok=True)
    log.info("memory: building the int8 copy of %s", source)
    with tempfile.TemporaryDirectory(dir=target, prefix=".build-") as tmp:
        built = Path(tmp) / "model.onnx"
        quantize(source, built)
        os.replace(built, target / model_file)
        for extra in model_dir.iterdir():
            if extra.is_file() and extra.name != model_file:
                copy = Path(tmp) / extra.name
                shutil.copyfile(extra, copy)
                os.replace(copy, target / extra.name)
        stamp = Path(tmp) / STAMP
        stamp.write_text(json.dumps(_source_stamp(source)))
        os.replace(stamp, target / STAMP)
    return target


def quantize(source: Path, out: Path) -> list[str]:
    """Write `source`'s int8 version (RECIPE) to `out`; return the nodes left fp32 by name."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    # Nodes are stored in topological order: the last constant-weight MatMul is the one nearest the output.
    weighted = [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    keep_fp32 = weighted[-1:]
    with _quiet_root_logger():
        quantize_dynamic(
            source,
            out,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=keep_fp32,
        )
    return keep_fp32


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer logs through the root logger (advice on pre-processing, per-node notes);
    a filter on the root logger sees only records logged there, not those of named loggers."""
    root = logging.getLogger()
    drop = logging.Filter("no record is named this")
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["clip", "sentence"], help="CLIP's two encoders, or the sentence model")
    parser.add_argument("--cache-dir", type=Path, required=True, help="the fastembed cache holding the fp32 model")
    args = parser.parse_args()
    from gateway.memory.embed import ClipEmbedder
    from gateway.memory.text_embed import TextEncoders

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.model == "clip":
        folders = ClipEmbedder(cache_dir=args.cache_dir).model_dirs()
    else:
        folders = (TextEncoders(cache_dir=args.cache_dir).sentence_dir(),)
    for folder in folders:
        print(ensure_int8(folder))


if __name__ == "__main__":
    main()
