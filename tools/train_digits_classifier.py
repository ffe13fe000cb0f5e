"""Rebuild the sample-quality classifier shipped in the package: gencourse/assets/digits_classifier.pt.

    python tools/train_digits_classifier.py            # seed 0, about 1.5 minutes on a 2-core CPU

Trains :class:`gencourse.classifier.DigitsClassifier` with :func:`gencourse.classifier.train_classifier` on
the 1000 digits of the **train** split only (validation and test stay unseen: they are the protocol's real
row and reference set) plus generated "not a digit" images, reports its 10-way accuracy on the held-out
splits and what real images score, and writes the weights (a small state_dict with metadata).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gencourse import classifier, metrics
from gencourse.data import load


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: the training function's (~3200 steps)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=classifier.ASSET_PATH)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    train, val, test = (load("digits", s) for s in ("train", "val", "test"))
    t0 = time.time()
    model = classifier.train_classifier(train.images, train.labels, levels=17, seed=args.seed, epochs=args.epochs,
                                        verbose=True)
    seconds = time.time() - t0
    acc = {s.split: classifier.accuracy(model, s.images, s.labels) for s in (val, test)}
    meta = {**model.meta, "dataset": "digits", "split": "train", "val_accuracy": round(acc["val"], 4),
            "test_accuracy": round(acc["test"], 4)}
    path = classifier.save_classifier(model, args.out, meta)
    print(f"trained in {seconds:.0f} s; 10-way accuracy: validation {acc['val']:.4f}, test {acc['test']:.4f}")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")

    if args.out.resolve() == classifier.ASSET_PATH.resolve():
        metrics._CACHE.clear()
        print(metrics.format_quality(metrics.reference_quality(), title="real (val)"))


if __name__ == "__main__":
    main()
