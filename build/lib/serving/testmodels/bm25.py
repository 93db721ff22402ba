"""fastembed's `Qdrant/bm25` cache entry, made offline (run with the gateway venv, which has fastembed).

BM25 has no weights (the Snowball stemmers are compiled into py_rust_stemmers); fastembed only needs
its cache entry: config.json plus one stopword file per language it lists (one missing rejects the
whole entry). The upstream lists are in no pip package, so English is the common NLTK list kept in
english_stopwords.txt beside this file and the other languages get empty files (no stopwords removed;
BM25's IDF still weighs common words down). On users' machines fastembed downloads the real entry.

    .venv/bin/python -m serving.testmodels.bm25 --out models/text
"""

from __future__ import annotations

import argparse
from pathlib import Path

BM25_REPO = "models--Qdrant--bm25"
BM25_REVISION = "local-stopwords"


def build_bm25(out: Path) -> Path:
    from fastembed.sparse.bm25 import Bm25

    snapshot = out / BM25_REPO / "snapshots" / BM25_REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text("{}")
    english = (Path(__file__).with_name("english_stopwords.txt")).read_text()
    for name in Bm25._get_model_description("Qdrant/bm25").additional_files:
        (snapshot / name).write_text(english if name == "english.txt" else "")
    (out / BM25_REPO / "refs").mkdir(exist_ok=True)
    (out / BM25_REPO / "refs" / "main").write_text(BM25_REVISION)
    return snapshot



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="fastembed cache folder")
    print(build_bm25(parser.parse_args().out))


if __name__ == "__main__":
    main()
