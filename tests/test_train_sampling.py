"""pspnet_lite.train.sampling: which images an iteration sees (the same global batches for any world size, any
split into micro-batches, and after a resume), and per-sample augmentation seeds."""
import pytest
import torch

from pspnet_lite.train.presets import get_preset
from pspnet_lite.train.sampling import IterationBatchSampler, SeededSamples, build_datasets, stream_seed


def global_batches(n, batch, world, micro, seed=0, start=0, end=5):
    """Each iteration's keys over all ranks, in stream order (rank r's micro-batch a at a*W*m + r*m)."""
    accum = batch // world // micro
    per_rank = [list(IterationBatchSampler(n, batch, micro, accum, r, world, seed, start, end)) for r in range(world)]
    out = []
    for it in range(end - start):
        keys = []
        for a in range(accum):
            for r in range(world):
                keys += per_rank[r][it * accum + a]
        out.append(keys)
    return out


def test_every_world_size_and_micro_batch_sees_the_same_global_batches():
    ref = global_batches(10, 4, 1, 4)
    assert len(ref) == 5 and all(len(b) == 4 for b in ref)
    for world, micro in ((1, 1), (1, 2), (2, 2), (2, 1), (4, 1)):
        assert global_batches(10, 4, world, micro) == ref, (world, micro)


def test_epochs_are_permutations_and_start_resumes_the_exact_position():
    keys = [k for batch in global_batches(10, 4, 1, 4, end=5) for k in batch]  # 20 samples: 2 epochs
    assert sorted(i for e, i in keys if e == 0) == list(range(10)) == sorted(i for e, i in keys if e == 1)
    assert [i for e, i in keys if e == 0] != [i for e, i in keys if e == 1]  # a new order each epoch
    assert global_batches(10, 4, 1, 4, start=2, end=5) == global_batches(10, 4, 1, 4, end=5)[2:]
    assert global_batches(10, 4, 1, 4, seed=1) != global_batches(10, 4, 1, 4, seed=0)
    sampler = IterationBatchSampler(10, 4, 2, 2, 0, 1, 0, 3, 7)
    assert len(sampler) == len(list(sampler)) == 8  # 4 iterations x 2 micro-batches
    with pytest.raises(ValueError, match="training set is empty"):
        IterationBatchSampler(0, 4, 4, 1, 0, 1, 0, 0, 1)


def test_stream_seed():
    assert stream_seed(0, "dropout", 0) != stream_seed(0, "dropout", 1) != stream_seed(1, "dropout", 0)
    assert stream_seed(0, "dropout", 0) != stream_seed(0, "other", 0)
    assert stream_seed(0, "dropout", 0) == stream_seed(0, "dropout", 0) < 2**63
    torch.manual_seed(0)
    weights_stream = torch.rand(4)
    torch.manual_seed(stream_seed(0, "dropout", 0))
    assert not torch.equal(torch.rand(4), weights_stream)


def test_augmentation_draws_are_a_function_of_seed_epoch_and_index():
    cfg = get_preset("scenes-tiny", num_train_images=4, num_val_images=2)
    train_set, val_set = build_datasets(cfg)
    assert isinstance(train_set, SeededSamples) and len(train_set) == 4 and len(val_set) == 2
    x, y = train_set[(0, 1)]
    assert tuple(x.shape) == (3, 64, 64) and tuple(y.shape) == (64, 64)
    train_set[(0, 2)]  # other samples in between do not change a sample's draws
    x2, y2 = train_set[(0, 1)]
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = train_set[(1, 1)]  # the same image in the next epoch: other draws
    assert not torch.equal(x, x3)
    again, _ = build_datasets(cfg)
    assert torch.equal(again[(0, 1)][0], x)
    other_seed, _ = build_datasets(cfg.replace(seed=1))
    assert not torch.equal(other_seed[(0, 1)][0], x)


def test_build_datasets_sizes_and_no_validation():
    cfg = get_preset("scenes-tiny", num_train_images=3, val_every=-1)
    train_set, val_set = build_datasets(cfg)
    assert len(train_set) == 3 and val_set is None
    _, val_set = build_datasets(cfg.replace(val_every=0, val_split=None))
    assert val_set is None
    plain, _ = build_datasets(cfg.replace(augment=False))
    a, b = plain[(0, 0)], plain[(1, 0)]  # crop only, of a 64x64 image at crop 64: no random draws left
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_data_seed_draws_another_context_scenes_sample_for_both_splits():
    cfg = get_preset("scenes-tiny", num_train_images=2, num_val_images=2, val_every=0, augment=False)
    (train0, val0), (train5, val5) = build_datasets(cfg), build_datasets(cfg.replace(data_seed=5))
    assert torch.equal(train0[(0, 0)][0], build_datasets(cfg.replace(data_seed=0))[0][(0, 0)][0])  # None means 0
    assert not torch.equal(train0[(0, 0)][0], train5[(0, 0)][0]) and not torch.equal(val0[0][0], val5[0][0])
    assert train5.dataset.seed == val5.seed == 5
