"""`make bench-mnist`: every family's 28x28 model trained a few CPU minutes on the MNIST stand-in, and scored.

The lessons' `DATASET = "mnist"` sections are sized for a GPU. This script trains the same models (each family's
``train_images``) on this machine's CPU, on the stand-in that works offline (COURSE.md 2.2: the official MNIST
*test* files laid out by :func:`gencourse.data.install_mnist_standin` as 7,500 train / 1,500 val / 1,000 test
digits; figures on it are the stand-in's, not MNIST's). For each family it prints

- the epochs run and the CPU seconds of training (``time.process_time``, every torch thread counted),
- a test likelihood in bits/dim on the 256 levels where the family has a cheap one (exact, or a bound: said which),
  on the first ``--eval`` test digits, beside the per-pixel baseline,
- its samples scored by the course's protocol with the stand-in's classifier (recognized against real, classes
  covered, memorization), with the sampler and its network evaluations,

and writes a sample grid per family, its samples (``<family>.pt``, uint8 on the 256 levels) and the table
(``results.md``) to ``--out``. The epochs are :data:`EPOCHS` and the batch sizes :data:`BATCH`, sized to a few
minutes each on a 2-core CPU; ``--scale`` multiplies the epochs.

    python -m gencourse.bench_mnist                     # all families: about 55 min on 2 cores, plus about 20
                                                        # to train the stand-in's classifier (first use only: it is
                                                        # kept under build/mnist-standin/ with the laid-out files)
    python -m gencourse.bench_mnist vae gan --scale 2   # some of them, twice the epochs
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
DIMS = 28 * 28


@dataclass
class Family:
    """One family's 28x28 model: how to train it (``train(epochs, seed, subset, batch_size)`` -> model), sample it
    (``sample(model, n, generator)`` -> ``(n, 1, 28, 28)`` in [0, 1]), and its test NLL in nats per image if cheap
    (``nll(model, x)`` -> ``(B,)``, with ``nll_kind`` saying what it is)."""
    label: str
    lesson: str
    train: Callable
    sample: Callable
    sampler: str
    nll: Callable | None = None
    nll_kind: str = "not computed here"
    subset: int | None = None  # train on the first `subset` digits only (the costliest networks on a CPU)
    max_samples: int | None = None  # fewer samples where each costs 784 network evaluations


def _families() -> dict:
    from gencourse import autoregressive as ar
    from gencourse import diffusion, flows, gan, latent, transformer, vae, vq
    from gencourse import flow_matching as fm

    def first(pair):
        return pair[0]

    return {
        "vae": Family("VAE (conv, discretized logistic)", "03",
                      lambda e, s, sub, b: first(vae.train_images("mnist", epochs=e, seed=s, subset=sub,
                                                                  batch_size=b, verbose=False)),
                      lambda m, n, g: m.sample(n, generator=g), "z ~ p(z), then the decoder: 1 NFE",
                      lambda m, x: m.nll(x, k=100), "IWAE bound, k = 100"),
        "gan": Family("GAN (DCGAN-style, R1, EMA)", "04",
                      lambda e, s, sub, b: first(gan.train_images("mnist", epochs=e, seed=s, subset=sub,
                                                                  batch_size=b, verbose=False)),
                      lambda m, n, g: m.sample(n), "G(z): 1 NFE"),
        "flow": Family("flow (multi-scale RealNVP)", "05",
                       lambda e, s, sub, b: first(flows.train_images("mnist", epochs=e, seed=s, subset=sub,
                                                                  batch_size=b, verbose=False)),
                       lambda m, n, g: m.sample(n, generator=g), "inverse flow: 1 NFE",
                       lambda m, x: m.nll(x), "Jensen bound, one dequantization draw"),
        "diffusion": Family("diffusion (U-Net)", "06",
                            lambda e, s, sub, b: first(diffusion.train_images("mnist", epochs=e, seed=s, subset=sub,
                                                                           batch_size=b, verbose=False)),
                            lambda m, n, g: m.sample(n, steps=25, generator=g), "DDIM, 25 NFE"),
        "pixelcnn": Family("PixelCNN", "07",
                           lambda e, s, sub, b: first(ar.train_images("mnist", epochs=e, seed=s, subset=sub,
                                                                   batch_size=b, verbose=False)),
                           lambda m, n, g: m.sample(n, generator=g), "pixel by pixel: 784 NFE",
                           lambda m, x: m.nll(x), "exact", max_samples=200),
        "flow_matching": Family("flow matching (U-Net)", "08",
                                lambda e, s, sub, b: first(fm.train_images("mnist", epochs=e, seed=s, subset=sub,
                                                                        batch_size=b, verbose=False)),
                                lambda m, n, g: m.sample(n, steps=5, method="heun", generator=g), "Heun, 9 NFE"),
        "image_gpt": Family("image GPT (2x2 patches)", "09",
                            lambda e, s, sub, b: first(transformer.train_images("mnist", epochs=e, seed=s, subset=sub,
                                                                             batch_size=b, patch=2, verbose=False)),
                            lambda m, n, g: m.sample(n, generator=g), "patch by patch, KV cache: 196 NFE",
                            lambda m, x: m.nll(x), "exact"),
        "tokens": Family("VQ-VAE + token GPT", "10",
                         lambda e, s, sub, b: first(vq.train_images("mnist", vq_epochs=e[0], prior_epochs=e[1], seed=s,
                                                                 subset=sub, batch_size=b, verbose=False)),
                         lambda m, n, g: m.sample(n, generator=g), "49 tokens, then the decoder: 49 NFE"),
        "latent": Family("latent flow matching (DiT)", "10",
                         lambda e, s, sub, b: first(latent.train_images("mnist", ae_epochs=e[0], fm_epochs=e[1], seed=s,
                                                                     subset=sub, batch_size=b, verbose=False)),
                         lambda m, n, g: m.sample(n, steps=4, method="heun", generator=g),
                         "Heun in the latent, then the decoder: 7 NFE"),
    }


# Epochs and batch sizes on the stand-in's 7,500 training digits, sized to two to five CPU minutes of training each
# (the PixelCNN: eight; the image GPT: eleven; the printout says how many). Two-stage models: (first stage, prior).
# The batches are smaller than the lessons' GPU defaults (64 to 128): a few CPU minutes buy few passes over the digits, and a smaller
# batch makes more updates of the same CPU seconds (flow matching, 2 epochs, 183 CPU s on one thread either way:
# recognized 0.334 with batches of 128, 0.506 with 32). Seed 0, recognized x real at the old -> these settings:
# VAE 6 x 128 -> 20 x 32, 0.53 -> 0.65; GAN 3 x 64 -> 3 x 32, 0.45 -> 0.60; flow 3 x 64 -> 4 x 32, 0.49 -> 0.59;
# diffusion 2 x 128 -> 2 x 32, 0.48 -> 0.60; PixelCNN 1 x 64 -> 2 x 16, 0.36 -> 0.51 (now 3 x 16, below);
# flow matching 2 x 128 -> 3 x 32, 0.34 -> 0.60; tokens (3, 4) x 128 -> x 32, 0.67 -> 0.82; latent (3, 12) x 128 -> (3, 8) x 32, 0.47 -> 0.51.
# The image GPT reads 2x2 patches here (196 tokens, lesson 09's PATCH = 2): on 784 pixel tokens, one pass over the
# 7,500 digits takes its default network about 20 CPU minutes even with the fused attention kernel, and a 2-block,
# 64-wide one after 2 epochs (525 CPU s) draws horizontal streaks, recognized 0.40 x real with 4 classes; with
# patches, 2 epochs: 0.51 x real on seed 0 and 0.45 on seed 1 (500 samples), on the 0.5 line; 3 epochs (about 645
# CPU s): 0.56 and 0.60.
# The PixelCNN, 2 epochs, sat on that line too (0.51 and 0.50 x real on seeds 0 and 1, 100 samples); 3 epochs (about
# 500 CPU s), 200 samples: 0.55 and 0.59.
EPOCHS = {"vae": 20, "gan": 3, "flow": 4, "diffusion": 2, "pixelcnn": 3, "flow_matching": 3, "image_gpt": 3,
          "tokens": (3, 4), "latent": (3, 8)}
BATCH = {"vae": 32, "gan": 32, "flow": 32, "diffusion": 32, "pixelcnn": 16, "flow_matching": 32, "image_gpt": 16,
         "tokens": 32, "latent": 32}
FAMILIES = tuple(EPOCHS)


# What the classifier makes of images that are not new digits, scored the same way: how far "recognized" can be
# trusted. Each is built from real validation digits that the real row does not score.
CONTROLS = {
    "chimeras": "the top half of one real digit over the bottom half of another",
    "blends": "two real digits averaged",
    "noisy real": "real digits plus Gaussian noise of standard deviation 0.3, clipped",
    "per-pixel model": "each pixel drawn from its own training marginal",
}


def control_images(n: int, seed: int = 0) -> dict:
    """The :data:`CONTROLS`, ``n`` images each ``(n, 1, 28, 28)`` on the 256 levels, from the stand-in's validation
    digits ``1000 .. 1000 + n`` (the real row scores the first 1,000), each paired with another of them (never
    itself)."""
    from gencourse import basics, data, metrics

    spare, gen = data.load("mnist", "val").images[1000:], torch.Generator().manual_seed(seed)  # the real row
    if len(spare) < n:                                                                  # scores the first 1,000
        raise ValueError(f"the controls need {n} validation digits beyond the real row's 1,000, the stand-in has "
                         f"{len(spare)}; lower --samples")
    x = spare[:n]
    partner = metrics.derangement(n, gen)  # no digit is paired with itself
    images = {"chimeras": metrics.chimeras(x, partner=partner),
              "blends": (x + x[partner]) / 2,
              "noisy real": (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(0, 1),
              "per-pixel model": basics.PixelCategorical(256).fit(data.load("mnist", "train").images).sample(
                  n, generator=gen)}
    return {k: torch.round(v * 255) / 255 for k, v in images.items()}


def _scaled(epochs, scale: float):
    if isinstance(epochs, tuple):
        return tuple(max(1, round(e * scale)) for e in epochs)
    return max(1, round(epochs * scale))


def run(names=FAMILIES, *, scale: float = 1.0, samples: int = 500, n_eval: int = 500, seed: int = 0,
        subset: int | None = None, root="build/mnist-standin", source=DEFAULT_SOURCE, out="build/bench-mnist",
        with_controls: bool = True) -> dict:
    """Train, sample and score the families ``names`` on the MNIST stand-in, and score the :data:`CONTROLS` beside
    them (``with_controls``); print the table and return the families' rows."""
    import matplotlib.pyplot as plt

    from gencourse import basics, data, metrics, viz
    from gencourse.train import seed_everything

    unknown = [n for n in names if n not in EPOCHS]
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    if samples < 10:
        raise ValueError(f"samples must be at least 10 (the protocol's smallest set), got {samples}")
    source = Path(source)
    if not (source / "t10k-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(f"the MNIST test files (t10k-*-idx*-ubyte.gz) are not in {source}; pass --source")
    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="mnist-standin-"))
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        data.install_mnist_standin(source, root)
    os.environ["GENCOURSE_DATA"] = str(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    x_eval = test.images[:n_eval]
    print(f"MNIST stand-in under {root}: {len(train)} training digits, {len(test)} test; "
          f"torch threads {torch.get_num_threads()}")
    real = metrics.reference_quality("mnist", samples)  # trains the stand-in's classifier on first use
    baseline = basics.PixelCategorical(256).fit(train.images[:subset]).nll(x_eval).mean().item()

    families, rows = _families(), {}
    for name in names:
        family, epochs = families[name], _scaled(EPOCHS[name], scale)
        seed_everything(seed)
        cpu, wall = time.process_time(), time.perf_counter()
        n_train = min(n for n in (subset, family.subset, len(train)) if n is not None)
        model = family.train(epochs, seed, n_train, BATCH[name])
        row = {"family": family.label, "lesson": family.lesson, "epochs": epochs, "batch": BATCH[name],
               "train_digits": n_train,
               "train_cpu_s": time.process_time() - cpu, "train_wall_s": time.perf_counter() - wall}
        with torch.no_grad():
            if family.nll is not None:
                nats = torch.cat([family.nll(model, x).cpu() for x in x_eval.split(100)]).mean().item()
                row.update(nll_bpd=metrics.bits_per_dim(nats, DIMS), nll_kind=family.nll_kind)
            torch.manual_seed(seed)  # the GAN draws its z from the global generator
            cpu = time.process_time()
            n = min(samples, family.max_samples or samples)
            x = family.sample(model, n, torch.Generator().manual_seed(seed)).cpu()
            row["sample_cpu_ms_per_1000"] = 1000 * (time.process_time() - cpu) * 1000 / n
        if not torch.isfinite(x).all():
            raise RuntimeError(f"{family.label}: its samples hold NaN or inf; the training diverged")
        quality = metrics.sample_quality(x, "mnist")
        row.update(sampler=family.sampler, samples=n, quality={k: v for k, v in quality.items() if isinstance(v, (int, float))})
        rows[name] = row
        torch.save(torch.round(x * 255).to(torch.uint8), out / f"{name}.pt")  # to score again (another classifier)
        viz.image_grid(x[:64], nrow=8, title=f"{family.label}, stand-in, {epochs} epochs").figure.savefig(
            out / f"{name}.png", dpi=80, bbox_inches="tight")
        plt.close("all")
        print(f"{family.label}: {epochs} epochs in {row['train_cpu_s']:.0f} CPU s; "
              f"recognized {quality['recognized']:.3f} (real {real['recognized']:.3f})", flush=True)

    controls = {}
    if with_controls:
        for name, x in control_images(samples, seed).items():
            quality = metrics.sample_quality(x, "mnist")
            controls[name] = {k: v for k, v in quality.items() if isinstance(v, (int, float))}
            controls[name]["interval"] = list(quality["interval"]["recognized"])

    text = table(rows, real, baseline, samples=samples, n_eval=n_eval, controls=controls)
    print("\n" + text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"real": {k: v for k, v in real.items() if isinstance(v, (int, float))},
                                                  "per_pixel_bpd": metrics.bits_per_dim(baseline, DIMS),
                                                  "rows": rows, "controls": controls}, indent=1, default=str))
    return rows


def table(rows: dict, real: dict, baseline: float, *, samples: int, n_eval: int, controls: dict | None = None) -> str:
    """The markdown table of :func:`run`'s rows, then the controls' (if any)."""
    from gencourse import metrics

    lines = [f"MNIST stand-in (7,500 / 1,500 / 1,000 digits of the official test set), this machine's CPU; "
             f"the real row {real['recognized']:.3f} recognized, Fréchet {real['frechet']:.0f}, precision / recall "
             f"{real['precision']:.2f} / {real['recall']:.2f}; test bits/dim on the first {n_eval} test digits "
             f"(per-pixel categorical: {metrics.bits_per_dim(baseline, DIMS):.2f})."]
    if rows:  # --controls-only has none
        lines += ["", "| family (lesson) | digits x epochs (batch) | train CPU s | test bits/dim | sampler | "
                  "CPU ms / 1000 | samples | recognized (x real) | classes | Fréchet | precision / recall | memorization |",
                  "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows.values():
        q = row["quality"]
        epochs = " + ".join(map(str, row["epochs"])) if isinstance(row["epochs"], tuple) else str(row["epochs"])
        nll = f"{row['nll_bpd']:.3f} ({row['nll_kind']})" if "nll_bpd" in row else "-"
        ratio = f"{q['recognized'] / real['recognized']:.2f}" if real["recognized"] > 0 else "-"  # a classifier that
        # recognizes no real digit (one trained too briefly) gives no ratio
        lines.append(f"| {row['family']} ({row['lesson']}) | {row['train_digits']:,} x {epochs} ({row['batch']}) | "
                     f"{row['train_cpu_s']:.0f} | {nll} | {row['sampler']} | {row['sample_cpu_ms_per_1000']:.0f} | "
                     f"{row['samples']} | {q['recognized']:.3f} "
                     f"({ratio}) | {q['classes_covered']:.0f} | {q['frechet']:.0f} | "
                     f"{q['precision']:.2f} / {q['recall']:.2f} | {q['memorization']:.2f} |")
    if controls:
        lines += ["", f"Controls, {samples} images each, scored the same way: what the classifier accepts that is not "
                  "a new digit.", "", "| control | recognized (95% interval) | x real | classes | Fréchet | "
                  "precision / recall |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, q in controls.items():
            lo, hi = q["interval"]
            ratio = f"{q['recognized'] / real['recognized']:.2f}" if real["recognized"] > 0 else "-"
            lines.append(f"| {name}: {CONTROLS[name]} | {q['recognized']:.3f} ({lo:.3f}-{hi:.3f}) | {ratio} | "
                         f"{q['classes_covered']:.0f} | {q['frechet']:.0f} | {q['precision']:.2f} / {q['recall']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", default=list(FAMILIES), help=f"default: all ({', '.join(FAMILIES)})")
    parser.add_argument("--controls-only", action="store_true", help="score only the real row and the controls")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every family's epochs (default 1)")
    parser.add_argument("--samples", type=int, default=500, help="samples scored per model (default 500; at most 200 for the PixelCNN)")
    parser.add_argument("--eval", type=int, default=500, dest="n_eval", help="test digits for the likelihood")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, default=None, help="train on the first SUBSET digits (a dry run)")
    parser.add_argument("--root", default="build/mnist-standin",
                        help="where the stand-in is laid out and its classifier kept (default build/mnist-standin)")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="folder with the MNIST t10k IDX files")
    parser.add_argument("--out", default="build/bench-mnist", help="folder for the grids and results.md")
    args = parser.parse_args(argv)
    run([] if args.controls_only else args.families, scale=args.scale, samples=args.samples, n_eval=args.n_eval,
        seed=args.seed, subset=args.subset, root=args.root, source=args.source, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
