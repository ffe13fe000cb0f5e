"""Rebuild the sample-quality classifier shipped in the package: gencourse/assets/digits_classifier.pt.

    python tools/train_digits_classifier.py            # seed 0, about a minute on a 2-core CPU

Trains :class:`gencourse.metrics.DigitsClassifier` with :func:`gencourse.metrics.train_digits_classifier`
on the digits train + val splits (never test) plus generated "not a digit" images, reports the 10-way test
accuracy and what real and fake images score, and writes the weights (a small state_dict with metadata).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gencourse import metrics


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: the training function's (150)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=metrics.ASSET_PATH)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = metrics.train_digits_classifier(seed=args.seed, epochs=args.epochs, verbose=True)
    seconds = time.time() - t0
    acc = metrics.classifier_accuracy(model, "digits", "test")
    meta = {**model.meta, "test_accuracy": round(acc, 4)}
    path = metrics.save_classifier(model, args.out, meta)
    print(f"trained in {seconds:.0f} s; 10-way test accuracy {acc:.4f}")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")

    if args.out.resolve() == metrics.ASSET_PATH.resolve():
        metrics._CACHE.clear()
        test = metrics._real("digits", "test")
        q = metrics.sample_quality(test)
        print(metrics.format_quality(q, title="test images"))


if __name__ == "__main__":
    main()
