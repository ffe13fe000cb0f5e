"""The lessons' MNIST path runs (COURSE.md §2.2), with the smallest settings, on real 28x28 digits.

No internet here: the official MNIST *test* files in ../shared/data/mnist/ are laid out where torchvision looks
for MNIST (:func:`gencourse.data.install_mnist_standin`: 9,000 shuffled digits as the "training" file, 1,000 as
the "test" file), under a temporary ``$GENCOURSE_DATA`` (the ``standin`` fixture of conftest.py, with a
sample-quality classifier trained for 1 epoch so that the lesson does not train its own). This checks that a
lesson runs on 28x28 data, not what it learns.
"""
import re

import nbformat
import pytest

from gencourse import authoring, data

from conftest import MNIST
LESSONS = ["02_autoencoders", "03_variational_autoencoders", "04_generative_adversarial_networks", "05_normalizing_flows",
           "06_diffusion_models", "07_autoregressive_models", "08_flow_matching",
           "09_transformers", "10_latent_and_token_models"]  # the lessons with DATASET = "mnist" tested here
SECTION_PRINTS = {"10_latent_and_token_models": "token GPT: test NLL",
                  "03_variational_autoencoders": "conv VAE, IWAE NLL bound", "07_autoregressive_models": "PixelCNN, exact",
                  "04_generative_adversarial_networks": "no likelihood to report",  # (a GAN: its samples, scored)
                  "05_normalizing_flows": "multi-scale flow, Jensen bound (one draw)",
                  "09_transformers": "image GPT on mnist, 2x2 patches: test NLL"}
# lesson 09's 2x2 patches here; its one-token-per-pixel path is trained on 28x28 images in test_transformer.py
LESSON_ENV = {"09_transformers": {"GENCOURSE_PATCH": "2"}}
# below the quick settings: a 28x28 network costs a CPU many times the digits' (few steps, samples, test images)
SMALLER = {"GENCOURSE_T": "24", "GENCOURSE_SAMPLES": "40", "GENCOURSE_SWEEP_SAMPLES": "40", "GENCOURSE_EVAL": "16"}

pytestmark = [pytest.mark.student,
              pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason=f"the MNIST test files are not in {MNIST}")]


def test_standin_layout_loads_like_mnist(standin):
    sizes = {split: len(data.load("mnist", split, root=standin, download=False)) for split in ("train", "val", "test")}
    assert sizes == {"train": 7500, "val": 1500, "test": 1000}
    x = data.load("mnist", "test", root=standin, download=False).images
    assert x.shape[1:] == (1, 28, 28) and x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_runs_on_mnist(lesson, standin, monkeypatch):
    nb = nbformat.read(authoring.NOTEBOOKS / f"{lesson}.ipynb", as_version=4)
    env = {"GENCOURSE_QUICK": "1", "GENCOURSE_DATASET": "mnist", "GENCOURSE_DATA": str(standin),
           "GENCOURSE_GRADING": "0", "MPLBACKEND": "Agg", **SMALLER, **LESSON_ENV.get(lesson, {})}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    authoring.execute(nb, cwd=authoring.NOTEBOOKS, timeout=600)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "mnist: 7500 training images, shape (1, 28, 28), 256 levels" in printed
    assert SECTION_PRINTS.get(lesson, "") in printed  # the 28x28 section got as far as its likelihood table
    assert not re.search(r"^Traceback \(most recent call last\)", printed, re.M)  # (lesson 09 samples Python's
    # manual, whose sentences may mention a traceback)
