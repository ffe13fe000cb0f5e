"""Where a latent space pays: latent and pixel-space flow matching on 28x28 digits at equal training seconds.

Lesson 10 found that on 8x8 digits a latent buys sample quality but not speed (its decoder costs more than the
flow saves). This script measures the 28x28 case on a CPU, on the MNIST stand-in (COURSE.md 2.2: the official
MNIST *test* files laid out as a 7500 / 1500 / 1000 split, :func:`gencourse.data.install_mnist_standin`):

1. **latent flow matching** (:func:`gencourse.latent.train_images`): the autoencoder with a ``(4, 7, 7)`` latent
   for ``--ae-epochs``, then the DiT on its latents for as many epochs as fit in the rest of the budget;
2. **pixel flow matching** (:func:`gencourse.flow_matching.train_images`): the small U-Net on the 784 pixels,
   for as many epochs as fit in the budget.

Both get ``--seconds`` of training (the autoencoder counts against the latent model's budget). Seconds are the
process's **CPU seconds** (``time.process_time``): with one torch thread that is the work done, and it does not
grow when other jobs share the machine, as wall-clock time does. The epochs come from a timed probe of a few
training steps of each network; the seconds actually spent are printed. Then each draws ``--samples`` images
with Euler's method, 10 steps (10 NFE), timed (CPU milliseconds per 1000 samples, decoder included) and scored by
the course's protocol (:func:`gencourse.metrics.sample_quality`, the stand-in's classifier, trained here on first
use), beside the real row and the autoencoder's ceiling.

    nice -n 10 env OMP_NUM_THREADS=1 python -m gencourse.latent_bench --seconds 210

Figures are the stand-in's, on this machine's CPU: they are not MNIST's, and a GPU changes the timings.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
BATCH = 128


def _step_seconds(loss_fn, make_batch, steps: int = 4) -> float:
    """CPU seconds per training step (forward, backward, Adam) of ``loss_fn`` on batches from ``make_batch()``: the
    median of ``steps`` timed steps after one warm-up step."""
    params = [p for p in loss_fn.__self__.parameters() if p.requires_grad] if hasattr(loss_fn, "__self__") else None
    optimizer = torch.optim.Adam(params, 1e-4)
    times = []
    for i in range(steps + 1):
        batch = make_batch()
        start = time.process_time()
        loss = loss_fn(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:
            times.append(time.process_time() - start)
    return sorted(times)[len(times) // 2]


def plan_epochs(n_train: int, seconds: float, ae_epochs: int, seed: int = 0) -> dict:
    """Epochs for each model so that its training takes about ``seconds``, from probed step times -> dict with
    ``ae_epochs``, ``fm_epochs``, ``pixel_epochs`` and the probed ``step_seconds``."""
    from gencourse import flow_matching as fm, latent

    torch.manual_seed(seed)
    steps_per_epoch = math.ceil(n_train / BATCH)
    images = lambda: torch.randint(0, 256, (BATCH, 1, 28, 28)).float() / 255
    model, pixel = latent.image_model("mnist"), fm.image_model("mnist")
    ae = latent.LatentAutoencoder(4, 7, image_size=28)  # a trainable copy of the model's autoencoder
    step = {"autoencoder": _step_seconds(ae.loss, images),
            "latent flow": _step_seconds(model.loss, lambda: torch.randn(BATCH, *model.latent_shape)),
            "pixel flow": _step_seconds(pixel.loss, images)}
    ae_seconds = ae_epochs * steps_per_epoch * step["autoencoder"]
    fm_epochs = max(1, round((seconds - ae_seconds) / (steps_per_epoch * step["latent flow"])))
    pixel_epochs = max(1, round(seconds / (steps_per_epoch * step["pixel flow"])))
    return {"ae_epochs": ae_epochs, "fm_epochs": fm_epochs, "pixel_epochs": pixel_epochs, "step_seconds": step}


def _timed_samples(sample_fn, n: int):
    start = time.process_time()
    x = sample_fn(n)
    return x.cpu(), 1000 * (time.process_time() - start) * 1000 / n


def run(seconds: float = 210.0, *, samples: int = 1000, ae_epochs: int = 3, seed: int = 0, root=None,
        source=DEFAULT_SOURCE, subset: int | None = None, verbose: bool = False) -> dict:
    """Train latent and pixel flow matching on the MNIST stand-in for about ``seconds`` each, sample and score
    them; print the table and return its figures ``{model: {...}}``. ``subset``: train on the first ``subset``
    images only (a dry run)."""
    from gencourse import data, latent, metrics
    from gencourse import flow_matching as fm
    from gencourse.train import seed_everything

    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="mnist-standin-"))
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        data.install_mnist_standin(source, root)
    os.environ["GENCOURSE_DATA"] = str(root)
    train = data.load("mnist", "train")
    print(f"MNIST stand-in under {root}: {len(train)} training images; torch threads {torch.get_num_threads()}")
    start = time.perf_counter()
    real = metrics.reference_quality("mnist", min(samples, 1000))  # trains the stand-in's classifier on first use
    print(f"classifier and real row ready in {time.perf_counter() - start:.0f} s "
          f"(classifier: {metrics.classifier_path('mnist')})")

    plan = plan_epochs(len(train.images[:subset]), seconds, ae_epochs, seed)
    print("probed CPU seconds per training step (batch 128): "
          + ", ".join(f"{k} {v:.3f}" for k, v in plan["step_seconds"].items())
          + f"; budget {seconds:.0f} s each -> autoencoder {plan['ae_epochs']} + DiT {plan['fm_epochs']} epochs, "
            f"U-Net {plan['pixel_epochs']} epochs")

    rows = {}
    seed_everything(seed)
    start = time.process_time()  # latent.train_images("mnist", ...) in its two stages, each timed
    ae, _ = latent.train_autoencoder(dataset="mnist", subset=subset, epochs=plan["ae_epochs"], batch_size=BATCH,
                                     seed=seed, verbose=verbose)
    ae_seconds = time.process_time() - start
    lfm, _ = latent.train_latent_fm(ae, network="dit", epochs=plan["fm_epochs"], lr=latent.MNIST_LR, seed=seed,
                                    verbose=verbose, dataset="mnist", subset=subset, **latent.MNIST_DIT)
    rows["latent FM, DiT"] = dict(model=lfm, train_s=time.process_time() - start, first_s=ae_seconds,
                                  epochs=f"{plan['ae_epochs']} + {plan['fm_epochs']}",
                                  params=latent.num_parameters(lfm.net),
                                  sample=lambda n, g: lfm.sample(n, 10, "euler", generator=g))
    start = time.process_time()
    pfm, _ = fm.train_images("mnist", epochs=plan["pixel_epochs"], seed=seed, subset=subset, verbose=verbose)
    rows["pixel FM, U-Net"] = dict(model=pfm, train_s=time.process_time() - start, first_s=0.0,
                                   epochs=str(plan["pixel_epochs"]), params=latent.num_parameters(pfm),
                                   sample=lambda n, g: pfm.sample(n, steps=10, method="euler", generator=g))

    for name, row in rows.items():
        x, row["ms"] = _timed_samples(lambda n: row["sample"](n, torch.Generator().manual_seed(seed)), samples)
        row["quality"] = metrics.sample_quality(x, "mnist")
    val = data.load("mnist", "val").images[:1000]
    ceiling = metrics.sample_quality(latent.quantize(lfm.autoencoder(val), 256), "mnist",
                                     set_size=min(samples, 1000))

    print(metrics.format_quality({**{k: r["quality"] for k, r in rows.items()}, "AE ceiling": ceiling}, real,
                                 dataset="mnist"))
    print(f"\n{'model':<17}{'params':>9}{'epochs':>9}{'AE CPU s':>10}{'train CPU s':>13}{'NFE':>5}{'CPU ms/1000':>13}"
          f"{'recognized / real':>19}{'memorization':>14}")
    for name, row in rows.items():
        q = row["quality"]
        print(f"{name:<17}{row['params']:>9,}{row['epochs']:>9}{row['first_s']:>10.0f}{row['train_s']:>13.0f}{10:>5}"
              f"{row['ms']:>13.0f}{q['recognized'] / real['recognized']:>19.2f}{q['memorization']:>14.2f}")
    print(f"(real recognized {real['recognized']:.3f}; ms per 1000 samples include the decoder; the autoencoder "
          f"({latent.num_parameters(lfm.autoencoder, trainable=False):,} parameters) is not in params, its "
          "training seconds are in train CPU s; CPU seconds of this process, one torch thread)")
    return {name: {k: v for k, v in row.items() if k not in ("model", "sample")} for name, row in rows.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=210.0, help="training seconds per model (default 210)")
    parser.add_argument("--samples", type=int, default=1000, help="samples scored per model (default 1000)")
    parser.add_argument("--ae-epochs", type=int, default=3, help="autoencoder epochs, inside the latent budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="where the stand-in is laid out (default: a temporary folder)")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="folder with the MNIST t10k IDX files")
    parser.add_argument("--subset", type=int, default=None, help="train on the first SUBSET images (a dry run)")
    parser.add_argument("--verbose", action="store_true", help="progress bars and per-model summaries")
    args = parser.parse_args(argv)
    run(args.seconds, samples=args.samples, ae_epochs=args.ae_epochs, seed=args.seed, root=args.root,
        source=args.source, subset=args.subset, verbose=args.verbose)


if __name__ == "__main__":
    main()
