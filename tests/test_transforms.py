"""The paper's augmentation (§4): alignment, ignore padding, value sets, switches, determinism."""
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from pspnet_lite.data.transforms import MEAN, STD, AugParams, EvalTransform, TrainTransform, to_tensor

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [10, 10, 10], [250, 250, 250]], np.uint8)


def blocky_pair(h=120, w=160, seed=0, values=(0, 2, 3, 5, 7, 9)):
    """A mask of 20x20 blocks and an image painted with each block's palette colour."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(values, size=(h // 20 + 1, w // 20 + 1)).astype(np.uint8)
    mask = np.kron(blocks, np.ones((20, 20), np.uint8))[:h, :w]
    return PALETTE[mask], mask


def unnormalize(x: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(MEAN).view(3, 1, 1) * 255
    std = torch.tensor(STD).view(3, 1, 1) * 255
    return (x * std + mean).permute(1, 2, 0).numpy()  # (H, W, 3) float 0..255


def nearest_label(img: np.ndarray) -> np.ndarray:
    d = ((img[:, :, None, :] - PALETTE[None, None].astype(np.float32)) ** 2).sum(-1)
    return d.argmin(-1)


def interior(mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood holds one label (so bilinear/blur cannot mix colours)."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.erode(m, k) == cv2.dilate(m, k)


@pytest.mark.parametrize("seed", range(8))
def test_image_and_mask_stay_aligned_under_full_augmentation(seed):
    image, mask = blocky_pair(seed=seed)
    t = TrainTransform(crop_size=97, scale=(0.5, 2.0), rotate=(-10, 10), rotate_p=1.0, blur=True, blur_p=1.0,
                       flip=True, seed=seed)
    x, y = t(image, mask)
    assert x.shape == (3, 97, 97) and x.dtype == torch.float32
    assert y.shape == (97, 97) and y.dtype == torch.int64
    y = y.numpy()
    check = interior(y) & (y != 255)
    assert check.sum() > 500  # enough pixels to mean something
    np.testing.assert_array_equal(nearest_label(unnormalize(x))[check], y[check])


def test_mask_never_takes_new_values():
    image, mask = blocky_pair(values=(1, 4, 6))
    t = TrainTransform(crop_size=200, seed=3, rotate_p=1.0)
    for _ in range(10):
        _, y = t(image, mask)
        assert set(np.unique(y.numpy())) <= {1, 4, 6, 255}


def test_small_image_is_padded_with_mean_and_ignore_centred():
    image, mask = blocky_pair(h=60, w=40)
    t = TrainTransform(crop_size=(100, 80), scale=None, rotate=None, blur=False, flip=False, seed=0)
    x, y = t(image, mask)
    top, left = (100 - 60) // 2, (80 - 40) // 2
    inside = np.zeros((100, 80), bool)
    inside[top:top + 60, left:left + 40] = True
    np.testing.assert_array_equal(y.numpy()[inside].reshape(60, 40), mask)
    assert (y.numpy()[~inside] == 255).all()
    torch.testing.assert_close(x[:, top:top + 60, left:left + 40], to_tensor(image))
    assert x.permute(1, 2, 0)[torch.from_numpy(~inside)].abs().max() < 0.01  # mean colour -> ~0


def test_rotation_corners_are_ignore_and_mean():
    image = np.full((101, 101, 3), 200, np.uint8)
    mask = np.full((101, 101), 3, np.uint8)
    t = TrainTransform(crop_size=None, scale=None, blur=False, flip=False)
    img, msk = t.apply(image, mask, AugParams(angle=10.0))
    assert msk[0, 0] == msk[0, -1] == msk[-1, 0] == msk[-1, -1] == 255
    assert msk[50, 50] == 3 and set(np.unique(msk)) == {3, 255}
    np.testing.assert_array_equal(img[0, 0], t.fill)
    assert (img[msk == 3] == 200).all()


def test_everything_off_is_plain_normalisation():
    image, mask = blocky_pair()
    t = TrainTransform(crop_size=None, scale=None, rotate=None, blur=False, flip=False)
    x, y = t(image, mask)
    torch.testing.assert_close(x, to_tensor(image))
    expected = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) \
        / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(y.numpy(), mask)
    p = t.sample_params(120, 160, np.random.default_rng(0))
    assert p == AugParams()


def test_each_switch_does_only_its_step():
    image, mask = blocky_pair()
    t = TrainTransform(crop_size=None, scale=(0.5, 2.0), rotate=(-10, 10), blur=True, flip=True)
    img, msk = t.apply(image, mask, AugParams(flip=True))
    np.testing.assert_array_equal(img, image[:, ::-1])
    np.testing.assert_array_equal(msk, mask[:, ::-1])
    img, msk = t.apply(image, mask, AugParams(blur=True))
    np.testing.assert_array_equal(img, cv2.GaussianBlur(image, (5, 5), 0))
    np.testing.assert_array_equal(msk, mask)
    img, msk = t.apply(image, mask, AugParams(scale=2.0))
    assert img.shape == (240, 320, 3) and msk.shape == (240, 320)
    np.testing.assert_array_equal(msk[::2, ::2], mask)  # nearest upsampling by 2 repeats each label
    assert np.abs(img.astype(int) - cv2.resize(image, (320, 240)).astype(int)).max() <= 1
    img, _ = t.apply(image, mask, AugParams(scale=0.5))
    assert img.shape == (60, 80, 3)


def test_switched_off_steps_are_never_drawn():
    t = TrainTransform(crop_size=50, scale=None, rotate=None, blur=False, flip=False)
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = t.sample_params(100, 100, rng)
        assert (p.scale, p.angle, p.flip, p.blur) == (1.0, 0.0, False, False)
        assert 0 <= p.crop_top <= 50 and 0 <= p.crop_left <= 50
    t = TrainTransform(crop_size=50, seed=1)
    ps = [t.sample_params(100, 100) for _ in range(200)]
    assert all(0.5 <= p.scale <= 2.0 and -10 <= p.angle <= 10 for p in ps)
    assert 60 < sum(p.flip for p in ps) < 140 and 60 < sum(p.blur for p in ps) < 140
    assert 60 < sum(p.angle != 0 for p in ps) < 140  # rotate with p = 0.5 as in semseg


def test_seed_makes_it_deterministic():
    image, mask = blocky_pair()
    a = [TrainTransform(crop_size=64, seed=7)(image, mask) for _ in range(2)]
    torch.testing.assert_close(a[0][0], a[1][0])
    torch.testing.assert_close(a[0][1], a[1][1])
    b = TrainTransform(crop_size=64, seed=8)(image, mask)
    assert not torch.equal(a[0][0], b[0])
    t = TrainTransform(crop_size=64)
    x1, _ = t(image, mask, rng=np.random.default_rng(5))
    x2, _ = t(image, mask, rng=np.random.default_rng(5))
    torch.testing.assert_close(x1, x2)
    np.random.seed(11)
    g1 = TrainTransform(crop_size=64)(image, mask)[0]
    np.random.seed(11)
    g2 = TrainTransform(crop_size=64)(image, mask)[0]
    torch.testing.assert_close(g1, g2)  # seed=None draws from NumPy's global RNG


class _Same(Dataset):
    def __init__(self):
        self.image, self.mask = blocky_pair()
        self.t = TrainTransform(crop_size=48, seed=0)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.t(self.image, self.mask)


def test_dataloader_workers_draw_different_augmentations_reproducibly():
    def run():
        torch.manual_seed(0)
        return [x for x, _ in DataLoader(_Same(), batch_size=1, num_workers=2)]

    first, second = run(), run()
    assert not torch.equal(first[0], first[1])  # worker 0 and worker 1 differ
    assert len({tuple(x.flatten()[:50].tolist()) for x in first}) == 8
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_eval_transform():
    image, mask = blocky_pair(h=120, w=160)
    x, y = EvalTransform()(image, mask)
    torch.testing.assert_close(x, to_tensor(image))
    np.testing.assert_array_equal(y.numpy(), mask)
    x, y = EvalTransform(base_size=80)(image, mask)
    assert x.shape == (3, 60, 80) and y.shape == (120, 160)  # metrics stay at label resolution
    x, y = EvalTransform(base_size=80, resize="short", resize_mask=True)(image, mask)
    assert x.shape == (3, 80, 107) and y.shape == (80, 107)
    assert set(np.unique(y.numpy())) <= set(np.unique(mask))


def test_bad_input_raises_clear_errors():
    image, mask = blocky_pair()
    t = TrainTransform(crop_size=32)
    with pytest.raises(ValueError, match="differs from image size"):
        t(image, mask[:-1])
    with pytest.raises(ValueError, match="uint8"):
        t(image.astype(np.float32), mask)
    with pytest.raises(ValueError, match="0..255"):
        t(image, mask.astype(np.int32) + 300)
    with pytest.raises(ValueError, match="scale"):
        TrainTransform(scale=(2.0, 0.5))
    with pytest.raises(ValueError, match="crop_size"):
        TrainTransform(crop_size=0)
    with pytest.raises(ValueError, match="blur_kernel"):
        TrainTransform(blur_kernel=4)
    y = t(image, mask.astype(np.int64))[1]  # other integer dtypes in range are accepted
    assert y.dtype == torch.int64
