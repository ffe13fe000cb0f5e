"""The shared figures do what their arguments say."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gencourse import viz  # noqa: E402


def _drawn(ax):
    image = ax.get_images()[0]
    return image, np.asarray(image.get_array())


def test_grey_images_use_the_cmap_argument():
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, 2:6, 3:5] = 1.0  # a bright stroke on a dark background
    for cmap, ink in (("gray", (1.0, 1.0, 1.0)), ("gray_r", (0.0, 0.0, 0.0))):
        ax = viz.image_grid(x, nrow=2, cmap=cmap)
        image, array = _drawn(ax)
        assert array.ndim == 2, "a grey grid is drawn as one channel, so the colormap applies"
        assert image.get_cmap().name == cmap
        rgba = image.get_cmap()(image.norm(array[1 + 3, 1 + 3]))  # a stroke pixel of the first tile
        assert np.allclose(rgba[:3], ink)
        plt.close("all")


def test_tile_borders_are_grey_and_visible_on_black_and_white():
    for fill in (0.0, 1.0):
        ax = viz.image_grid(torch.full((4, 1, 8, 8), fill), nrow=2, pad=1)
        _, array = _drawn(ax)
        assert array[0, 0] == pytest.approx(0.5) and array[5, 9] == pytest.approx(0.5)
        assert array[1, 1] == pytest.approx(fill)
        plt.close("all")


def test_labels_and_bad_input():
    ax = viz.image_grid(torch.rand(3, 1, 8, 8), nrow=3, labels=[7, 1, 4])
    assert [t.get_text() for t in ax.texts] == ["7", "1", "4"]
    with pytest.raises(ValueError, match="one entry per image"):
        viz.image_grid(torch.rand(3, 1, 8, 8), labels=[1])
    with pytest.raises(ValueError, match="channels"):
        viz.image_grid(torch.rand(3, 2, 8, 8))
    plt.close("all")
