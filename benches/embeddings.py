"""The Python peer of the embedding throughput bench: the same chunks through
sentence-transformers on CPU. Needs torch and sentence-transformers, which the project
venvs do not carry (torch is large): run it from a scratch venv, see benches/embeddings.sh.

    python benches/embeddings.py MODEL_DIR TEXTS_JSON [--batch 32]
"""

import argparse
import json
import time

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("texts")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with open(args.texts) as f:
        texts = json.load(f)
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.encode(texts[: args.batch], batch_size=args.batch)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=args.batch)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "backend": f"sentence-transformers {sentence_transformers.__version__}, "
                f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
                "chunks": len(texts),
                "batch": args.batch,
                "seconds": seconds,
                "chunks_per_s": len(texts) / seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
