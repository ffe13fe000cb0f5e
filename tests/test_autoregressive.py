"""gencourse.autoregressive: the autoregressive property (autograd), normalized conditionals, exact likelihood
against direct computations (torch.distributions, a hand-built Markov chain, enumeration), the sampler's
distribution, and input checks."""
import itertools
import math

import pytest
import torch
from torch.distributions import Categorical

from gencourse import autoregressive as ar
from gencourse import data

D, L = ar.NUM_PIXELS, ar.LEVELS


def _random_images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, L, (n, 1, 8, 8), generator=g).float() / (L - 1)


def _small_models():
    torch.manual_seed(0)
    return [ar.PixelCNN(channels=8, layers=2), ar.MADE((80, 80), dropout=0.0), ar.MADE((70,), direct=False)]


def _perturb(model, seed=0):
    """Random non-zero weights everywhere (biases too), so no dependency hides behind a zero init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Masks against their definitions
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 3, 5, 7])
@pytest.mark.parametrize("kind", ["A", "B"])
def test_conv_mask_keeps_exactly_the_pixels_before_the_centre_in_raster_order(size, kind):
    mask = ar.conv_mask(size, kind)
    centre = (size // 2) * size + size // 2
    for a, b in itertools.product(range(size), repeat=2):
        position = a * size + b
        expected = position < centre or (kind == "B" and position == centre)
        assert mask[a, b].item() == float(expected)


def test_made_mask_rule_and_paths():
    d_in = torch.tensor([1, 2, 3, 4])
    d_hidden = torch.tensor([1, 2, 3, 1, 2])
    hidden = ar.made_mask(d_in, d_hidden)
    assert hidden.shape == (5, 4)
    assert hidden[0].tolist() == [1, 0, 0, 0] and hidden[2].tolist() == [1, 1, 1, 0]
    out = ar.made_mask(d_hidden, d_in, output=True)
    assert out.shape == (4, 5) and out[0].sum() == 0  # output 1 sees nothing: p(x_1) is a constant
    # Paths from input j to output i: (out @ hidden)[i, j] > 0 only for j < i (0-based), never on or above.
    paths = out @ hidden
    assert torch.all(paths.triu() == 0) and torch.all(paths.tril(-1)[1:, :1] > 0)


def test_mask_inputs_are_checked():
    for bad in (0, 2, -3, 2.5, True):
        with pytest.raises(ValueError, match="odd"):
            ar.conv_mask(bad, "A")
    with pytest.raises(ValueError, match="'A'"):
        ar.conv_mask(3, "C")
    with pytest.raises(ValueError, match="63"):
        ar.MADE((32, 32))


# ----------------------------------------------------------------------------------------------
# The autoregressive property, with autograd
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", _small_models(), ids=["pixelcnn", "made", "made-1layer-nodirect"])
def test_output_i_does_not_depend_on_inputs_from_i_on(model):
    _perturb(model)
    x = torch.rand(2, D, generator=torch.Generator().manual_seed(1))
    jac = torch.autograd.functional.jacobian(model, x, vectorize=True)  # (2, D, L, 2, D)
    assert jac.shape == (2, D, L, 2, D)
    for b in range(2):
        dep = jac[b, :, :, b, :].abs().amax(1)  # (D outputs, D inputs)
        assert torch.all(dep.triu() == 0), "an output depends on its own or a later input"
        # ... and the model does use the past: every pixel after the first sees some earlier pixel
        assert torch.all(dep[1:].amax(1) > 0)
        assert not jac[b, :, :, 1 - b, :].any(), "rows of a batch must not mix"


@pytest.mark.parametrize("model", _small_models()[:2], ids=["pixelcnn", "made"])
def test_dependency_matrix_agrees_with_the_full_jacobian(model):
    _perturb(model, seed=3)
    x = torch.rand(3, D, generator=torch.Generator().manual_seed(2))
    jac = torch.autograd.functional.jacobian(model, x, vectorize=True)
    b = torch.arange(3)
    expected = jac.abs().amax(2)[b, :, b, :].amax(0) > 0
    assert torch.equal(ar.dependency_matrix(model, x), expected)
    field = ar.receptive_field(model, 27, x)
    assert field.shape == (8, 8) and torch.equal(field.flatten(), expected[27])


def test_pixelcnn_blind_spot_and_growth():
    """Stacked masked 3x3 convolutions grow the field by a row per layer, and miss the upper right."""
    torch.manual_seed(0)
    fields = [ar.receptive_field(_perturb(ar.PixelCNN(channels=4, layers=n, first_kernel=3)), 36) for n in (0, 1, 2)]
    sizes = [int(f.sum()) for f in fields]
    assert sizes[0] == 4 and sizes[0] < sizes[1] < sizes[2]  # a 3x3 "A" kernel sees 4 pixels
    assert not fields[2][2, 7], "the pixel two rows up and three to the right lies in the blind spot"


def test_pixelcnn_pixel_logits_from_cropped_rows_equal_the_full_pass():
    model = _perturb(ar.PixelCNN(channels=8, layers=3))
    x = torch.rand(5, D, generator=torch.Generator().manual_seed(4))
    full = model(x)
    for i in (0, 7, 8, 30, 63):
        torch.testing.assert_close(model.pixel_logits(x, i), full[:, i], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Normalized distributions and the exact likelihood
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", _small_models()[:2], ids=["pixelcnn", "made"])
def test_predicted_distributions_sum_to_one_and_nll_matches_torch_distributions(model):
    _perturb(model, seed=5)
    x = _random_images(6)
    probs = model.probs(x)
    assert probs.shape == (6, D, L) and torch.all(probs >= 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6, D))
    torch.testing.assert_close(model.probs(x, temperature=0.5).sum(-1), torch.ones(6, D))
    k = (x.view(6, D) * 16).round().long()
    expected = -Categorical(logits=model.logits(x)).log_prob(k).sum(1)
    nll = model.nll(x)
    assert nll.shape == (6,)
    torch.testing.assert_close(nll, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model.log_prob(x), -nll)
    torch.testing.assert_close(model.nll(x.view(6, D)), nll)  # flat images are accepted too


def _markov_made(seed=0):
    """A hand-built MADE: hidden path off, direct weights only from pixel i-1 to pixel i.

    logits_i = b_i + a (2 x_{i-1} - 1) for i >= 1, logits_0 = b_0: a Markov chain over levels.
    """
    g = torch.Generator().manual_seed(seed)
    model = ar.MADE((63,), dropout=0.0, direct=True)
    b, a = torch.randn(D, L, generator=g), 2.0 * torch.randn(L, generator=g)
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
        model.direct.weight.zero_()
        for i in range(1, D):
            model.direct.weight[i * L:(i + 1) * L, i - 1] = a
        model.direct.bias.copy_(b.flatten())
    return model.eval(), b, a


def test_likelihood_of_a_hand_built_markov_model_against_a_direct_computation():
    model, b, a = _markov_made()
    x = _random_images(4, seed=7)
    k = (x.view(4, D) * 16).round().long()
    expected = []
    for row in k.tolist():
        log_p = math.log(torch.softmax(b[0], 0)[row[0]])
        for i in range(1, D):
            transition = torch.softmax(b[i] + a * (2 * row[i - 1] / 16 - 1), 0)  # p(k_i | k_{i-1})
            log_p += math.log(transition[row[i]])
        expected.append(-log_p)
    torch.testing.assert_close(model.nll(x), torch.tensor(expected), rtol=1e-5, atol=1e-3)


def test_categorical_nll_is_a_normalized_chain_rule_distribution():
    """Enumerate every sequence of a tiny autoregressive model (3 pixels, 3 levels): probabilities sum to one."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 3, 3, generator=g)

    def logits_fn(k):  # (B, 3) -> (B, 3, 3); pixel i sees the levels before it
        out = torch.zeros(len(k), 3, 3)
        out[:, 0] = w[0, 0]
        out[:, 1] = w[1, k[:, 0]]
        out[:, 2] = w[2, k[:, 1]] + 0.5 * k[:, :1].float()
        return out

    every = torch.tensor(list(itertools.product(range(3), repeat=3)))
    p = torch.exp(-ar.categorical_nll(logits_fn(every), every))
    assert p.shape == (27,)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))


def test_categorical_nll_is_stable_for_large_logits():
    logits = torch.tensor([[[0.0, 200.0, -200.0]]])
    nll = ar.categorical_nll(logits, torch.tensor([[2]]))
    assert torch.isfinite(nll).all() and abs(nll.item() - 400.0) < 1e-3


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_samples_of_the_markov_model_follow_its_tempered_conditionals(temperature):
    model, b, a = _markov_made(seed=1)
    n = 2000
    x = model.sample(n, temperature=temperature, generator=torch.Generator().manual_seed(2))
    assert x.shape == (n, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    k = (x.view(n, D) * 16).round().long()
    assert torch.allclose(k.float() / 16, x.view(n, D))
    p0 = torch.softmax(b[0] / temperature, 0)
    freq0 = torch.bincount(k[:, 0], minlength=L).float() / n
    assert (freq0 - p0).abs().max() < 0.04
    # p(k_1 | k_0) for the most common k_0
    k0 = int(freq0.argmax())
    rows = k[k[:, 0] == k0, 1]
    p1 = torch.softmax((b[1] + a * (2 * k0 / 16 - 1)) / temperature, 0)
    freq1 = torch.bincount(rows, minlength=L).float() / len(rows)
    assert (freq1 - p1).abs().max() < 4 * math.sqrt(0.25 / len(rows)) + 0.01


def test_sample_autoregressive_calls_pixels_in_order_and_keeps_a_given_prefix():
    calls = []

    def logits_fn(k, i):
        calls.append(i)
        assert torch.all(k[:, i:] == 0), "pixels from i on must still be blank when pixel i is drawn"
        return torch.zeros(len(k), 5)

    k = ar.sample_autoregressive(logits_fn, 7, 6)
    assert calls == list(range(6)) and k.shape == (7, 6) and k.dtype == torch.long and k.max() < 5

    canvas = torch.tensor([[3, 1, 0, 0]] * 2)
    seen = []
    k = ar.sample_autoregressive(lambda k, i: (seen.append(i), torch.zeros(2, 4))[1], 2, 4, canvas=canvas, start=2)
    assert seen == [2, 3] and torch.equal(k[:, :2], canvas[:, :2])


def test_complete_keeps_the_given_pixels():
    model = _perturb(ar.PixelCNN(channels=4, layers=1))
    x = _random_images(3)
    out = model.complete(x, 40, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 8, 8)
    assert torch.equal(out.view(3, D)[:, :40], x.view(3, D)[:, :40])


def test_sampling_is_reproducible_with_a_generator():
    model = _perturb(ar.MADE((64, 64)))
    a = model.sample(5, generator=torch.Generator().manual_seed(3))
    b = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------
# Input checks, the recipe
# ----------------------------------------------------------------------------------------------

def test_bad_inputs_raise_value_errors():
    model = ar.MADE((64,))
    with pytest.raises(ValueError, match="shape"):
        model.nll(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.nll(torch.full((2, 1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="grid"):
        model.nll(torch.full((2, 1, 8, 8), 0.03))
    with pytest.raises(ValueError, match="tensor"):
        model.nll([[0.0] * 64])
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive"):
            model.sample(n)
    for t in (0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="temperature"):
            model.sample(2, temperature=t)
    with pytest.raises(ValueError, match="given"):
        model.complete(_random_images(2), 65)
    with pytest.raises(ValueError, match="pixel"):
        ar.receptive_field(model, 64)
    with pytest.raises(ValueError, match="pixelcnn"):
        ar.train_digits(kind="transformer")
    with pytest.raises(ValueError, match="epochs"):
        ar.train_digits(epochs=0)


@pytest.mark.parametrize("kind", ar.KINDS)
def test_train_digits_quick_gives_the_capstone_interface(kind):
    model, history = ar.train_digits(quick=True, kind=kind, verbose=False)
    assert isinstance(model, ar.AutoregressiveModel) and model.likelihood == "exact"
    assert history.epochs == 2 and len(history.val_loss) == 2
    test = data.load("digits", "test").images[:50]
    nll = model.nll(test)
    assert nll.shape == (50,) and torch.isfinite(nll).all()
    assert nll.mean() < 64 * math.log(17)  # already better than uniform over 17 levels
    samples = model.sample(4)
    assert samples.shape == (4, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1


# ----------------------------------------------------------------------------------------------
# Truncated sampling: top-k and nucleus (top-p) against a brute-force search over subsets of levels
# ----------------------------------------------------------------------------------------------

def _brute_force_nucleus(row, p):
    """The smallest set of levels whose probability reaches p (the most probable such set), by enumerating
    every subset, smallest first: a boolean mask over the levels of one row of probabilities."""
    levels = len(row)
    for size in range(1, levels + 1):
        best, best_mass = None, -1.0
        for subset in itertools.combinations(range(levels), size):
            mass = sum(row[list(subset)].tolist())
            if mass >= p - 1e-9 and mass > best_mass:
                best, best_mass = subset, mass
        if best is not None:
            keep = torch.zeros(levels, dtype=torch.bool)
            keep[list(best)] = True
            return keep
    raise AssertionError("unreachable: the full set has mass 1")


def _brute_force_top_k(row, k):
    """The k levels of largest probability: the subset of size k with the largest total probability."""
    best = max(itertools.combinations(range(len(row)), k), key=lambda s: sum(row[list(s)].tolist()))
    keep = torch.zeros(len(row), dtype=torch.bool)
    keep[list(best)] = True
    return keep


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8, 0.9, 0.99, 1.0])
def test_top_p_keeps_the_smallest_set_reaching_p_and_renormalizes(p):
    g = torch.Generator().manual_seed(int(p * 100))
    logits = torch.randn(6, 7, generator=g) * 1.5
    filtered = ar.top_p_logits(logits, p)
    probs = torch.softmax(logits.double(), -1)
    for row, out in zip(probs, filtered):
        keep = _brute_force_nucleus(row, p)
        assert torch.equal(torch.isfinite(out), keep)
        expected = torch.where(keep, row, torch.zeros_like(row)) / row[keep].sum()
        assert torch.allclose(torch.softmax(out.double(), -1), expected, atol=1e-6)
    assert torch.equal(ar.top_p_logits(logits, 1.0), logits)  # p = 1 keeps every level


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7, 9])
def test_top_k_keeps_the_k_most_likely_levels(k):
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(2, 3, 7, generator=g)
    out = ar.top_k_logits(logits, k)
    assert out.shape == logits.shape
    probs = torch.softmax(logits, -1)
    for row, filtered in zip(probs.view(-1, 7), out.view(-1, 7)):
        keep = _brute_force_top_k(row, min(k, 7))
        assert torch.equal(torch.isfinite(filtered), keep)
        assert torch.allclose(torch.softmax(filtered, -1), torch.where(keep, row, 0.0) / row[keep].sum(), atol=1e-6)


def test_filters_work_on_leading_dimensions_and_compose_with_temperature():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 4, 10, generator=g)
    out = ar.filtered_logits(logits, temperature=0.5, top_k=6, top_p=0.7)
    manual = ar.top_p_logits(ar.top_k_logits(logits / 0.5, 6), 0.7)
    assert torch.equal(out, manual)
    assert torch.equal(ar.filtered_logits(logits), logits)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k"):
            ar.top_k_logits(logits, bad)
    for bad in (0, -0.1, 1.5, "0.9"):
        with pytest.raises(ValueError, match="p"):
            ar.top_p_logits(logits, bad)


def test_truncated_sampler_draws_only_kept_levels_in_their_renormalized_proportions():
    logits_row = torch.tensor([2.0, 1.5, 0.0, -0.5, -3.0])
    n = 20_000
    k = ar.sample_autoregressive(lambda k, i: logits_row.expand(len(k), 5), n, 1, top_p=0.8,
                                 generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(k[:, 0], minlength=5).double() / n
    probs = torch.softmax(logits_row.double(), 0)
    keep = _brute_force_nucleus(probs, 0.8)
    expected = torch.where(keep, probs, torch.zeros_like(probs)) / probs[keep].sum()
    assert (freq - expected).abs().max() < 0.015
    k = ar.sample_autoregressive(lambda k, i: logits_row.expand(len(k), 5), n, 1, top_k=2,
                                 generator=torch.Generator().manual_seed(1))
    assert set(k[:, 0].tolist()) == {0, 1}


def test_model_sample_defaults_are_unchanged_by_the_truncation_options():
    model = _perturb(ar.MADE((64, 64)))
    a = model.sample(5, generator=torch.Generator().manual_seed(3))
    b = model.sample(5, generator=torch.Generator().manual_seed(3), top_k=None, top_p=None)
    c = model.sample(5, generator=torch.Generator().manual_seed(3), top_p=1.0)
    assert torch.equal(a, b) and torch.equal(a, c)
    one = model.sample(3, top_k=1)  # greedy: every sample the same
    assert torch.equal(one[0], one[1]) and torch.equal(one[1], one[2])


# ----------------------------------------------------------------------------------------------
# made_masks and the small trained MADE
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hidden", [(), (8,), (9, 6), (12, 12, 12)])
def test_made_masks_give_paths_only_from_earlier_inputs(hidden):
    d = 5
    masks = ar.made_masks(d, hidden)
    assert len(masks) == len(hidden) + 1
    widths = [d, *hidden]
    for m, w_in, w_out in zip(masks, widths, [*hidden, d]):
        assert m.shape == (w_out, w_in)
    paths = masks[0]
    for m in masks[1:]:
        paths = m @ paths
    assert not paths.triu().any()  # output i never reaches input j >= i
    if hidden:  # cycling degrees use every hidden degree: each output d > 1 is reachable from input 1
        assert (paths[1:, 0] > 0).all()


def test_train_made_learns_the_digits_without_peeking():
    torch.manual_seed(0)
    k_train = ar.image_levels(data.load("digits", "train").images)
    k_val = ar.image_levels(data.load("digits", "val").images)
    model = ar.train_made(k_train, epochs=6)
    assert not ar.dependency_matrix(model).triu().any()
    with torch.no_grad():
        nll = ar.categorical_nll(model(k_val.float() / 16), k_val).mean().item()
    assert nll < 108.0  # beats independent pixels (the per-pixel categorical: 110.5) after 6 epochs
    with pytest.raises(ValueError, match="int64"):
        ar.train_made(k_train.float())
    with pytest.raises(ValueError, match="hidden"):
        ar.train_made(k_train, hidden=10)


# ----------------------------------------------------------------------------------------------
# The 28x28 PixelCNN on 256 levels
# ----------------------------------------------------------------------------------------------

MNIST_FILES = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def _mnist_like(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 255


def _small_28(seed=0):
    torch.manual_seed(seed)
    return _perturb(ar.PixelCNN(channels=8, layers=2, first_kernel=7, side=28, levels=256), seed)


def test_mnist_pixelcnn_shapes_and_sizes():
    model = ar.image_model("mnist")
    assert model.image_shape == (1, 28, 28) and model.num_pixels == 784 and model.levels == 256
    assert model.reach == 3 + 8  # a 7x7 "A" layer and eight 3x3 "B" layers
    x = _mnist_like(2)
    with torch.no_grad():
        assert model(x.view(2, -1)).shape == (2, 784, 256)
        assert model.nll(x).shape == (2,) and model.logits(x).shape == (2, 784, 256)
    assert ar.image_model("fashion-mnist").levels == 256
    digits = ar.image_model("digits")
    assert digits.image_shape == (1, 8, 8) and digits.levels == 17


def test_mnist_pixelcnn_is_causal_by_autograd():
    """The logits of pixel i have a zero gradient with respect to every input j >= i, a non-zero one for
    some j < i (random weights, so no dependency hides behind a zero)."""
    model = _small_28()
    x = torch.rand(3, 784, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    logits = model(x)
    for i in (0, 1, 27, 28, 29, 400, 783):
        (grad,) = torch.autograd.grad(logits[:, i].sum(), x, retain_graph=True)
        seen = grad.abs().amax(0) > 0
        assert not seen[i:].any(), f"pixel {i} depends on itself or a later pixel"
        assert i == 0 or seen[:i].any()


@pytest.mark.parametrize("build", [_small_28, lambda: ar.image_model("mnist").eval()])
def test_mnist_pixelcnn_perturbing_a_pixel_leaves_earlier_logits_unchanged(build):
    model = build()
    x = _mnist_like(2, seed=2).view(2, -1)
    for j in (30, 405, 783):
        y = x.clone()
        y[:, j] = 1.0 - y[:, j]
        with torch.no_grad():
            a, b = model(x), model(y)
        # (a tolerance, not equality: a convolution algorithm may round differently, e.g. Winograd's transforms)
        assert (a[:, : j + 1] - b[:, : j + 1]).abs().max() < 1e-5, f"changing pixel {j} changed the logits of a pixel <= {j}"
        if j < 783:
            assert (a[:, j + 1:] - b[:, j + 1:]).abs().max() > 1e-3


def test_mnist_pixelcnn_cropped_sampling_pass_equals_the_full_pass():
    """pixel_logits crops to rows r - reach..r; the logits match the full network's."""
    model = _small_28(3)
    canvas = _mnist_like(3, seed=4).view(3, -1)
    with torch.no_grad():
        full = model(canvas)
        for i in (0, 5, 28 * 5 + 3, 28 * 20 + 10, 783):
            torch.testing.assert_close(model.pixel_logits(canvas, i), full[:, i], atol=1e-5, rtol=1e-5)


def test_mnist_pixelcnn_conditionals_and_joint_are_normalized():
    model = _small_28(5)
    x = _mnist_like(2, seed=6)
    with torch.no_grad():
        probs = model.probs(x)  # (2, 784, 256)
        torch.testing.assert_close(probs.double().sum(-1), torch.ones(2, 784, dtype=torch.float64), atol=1e-5, rtol=0)
        k = ar.image_levels(x, 256, (1, 28, 28))
        expected = -probs.gather(-1, k.unsqueeze(-1)).squeeze(-1).log().sum(-1)
        torch.testing.assert_close(model.nll(x), expected, rtol=1e-4, atol=1e-2)
    # the joint over every image sums to one: enumerate all 5^4 images of a 2x2 PixelCNN with 5 levels
    torch.manual_seed(0)
    tiny = _perturb(ar.PixelCNN(channels=4, layers=1, kernel=3, first_kernel=3, side=2, levels=5))
    images = torch.tensor(list(itertools.product(range(5), repeat=4))).float() / 4
    with torch.no_grad():
        total = torch.logsumexp(-tiny.nll(images.view(-1, 1, 2, 2)).double(), 0).exp()
    assert abs(total.item() - 1.0) < 1e-5


def test_mnist_pixelcnn_samples_on_the_256_level_grid():
    torch.manual_seed(0)
    model = ar.PixelCNN(channels=4, layers=1, first_kernel=7, side=28, levels=256).eval()
    s = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 1, 28, 28)
    k = s * 255
    assert s.min() >= 0 and s.max() <= 1 and (k - k.round()).abs().max() < 1e-4
    done = model.complete(_mnist_like(2), given=700, generator=torch.Generator().manual_seed(1))
    assert torch.equal(done.view(2, -1)[:, :700], _mnist_like(2).view(2, -1)[:, :700])


def test_mnist_pixelcnn_rejects_bad_input():
    model = _small_28()
    with pytest.raises(ValueError, match="shape"):
        model.nll(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="grid"):
        model.nll(torch.full((2, 1, 28, 28), 0.5))  # 0.5 * 255 is not an integer level
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.nll(2 * _mnist_like(2))
    with pytest.raises(ValueError, match="side"):
        ar.PixelCNN(side=1)
    with pytest.raises(ValueError, match="levels"):
        ar.PixelCNN(side=28, levels=1)
    with pytest.raises(ValueError, match="unknown dataset"):
        ar.image_model("cifar10")
    with pytest.raises(ValueError, match="unknown dataset"):
        ar.train_images("cifar10")
    with pytest.raises(ValueError, match="epochs"):
        ar.train_images("mnist", epochs=0)
    with pytest.raises(ValueError, match="subset"):
        ar.train_images("mnist", subset=0)


@pytest.mark.skipif(not (MNIST_FILES / "t10k-images-idx3-ubyte.gz").exists(), reason="no MNIST test files")
def test_mnist_pixelcnn_train_images_quick_on_the_standin(tmp_path, monkeypatch):
    root = data.install_mnist_standin(MNIST_FILES, tmp_path)
    monkeypatch.setenv("GENCOURSE_DATA", str(root))
    model, history = ar.train_images("mnist", quick=True, subset=32, verbose=False)
    assert model.channels == ar.QUICK_MODEL["channels"] and model.levels == 256 and not model.training
    assert len(history.train_loss) == 1 and len(history.val_loss) == 1
    assert history.val_loss[0] < 784 * math.log(256)  # one epoch already beats the uniform model
