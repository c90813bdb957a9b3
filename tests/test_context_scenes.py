"""ContextScenes: determinism, interface, and the geometry that makes the §3.1 failure modes real."""
import cv2
import numpy as np
import pytest
import torch

from pspnet_lite.data import context_scenes as cs
from pspnet_lite.data import scene_classes
from pspnet_lite.data import scene_drawing as draw
from pspnet_lite.data.context_scenes import (
    CLASSES,
    PALETTE,
    ROLE_NAMES,
    ROLES,
    SCENE_TYPES,
    ContextScenes,
    SceneConfig,
    classes_by_role,
    generate_scene,
    generate_split,
)

S = 128
ID = {c: i for i, c in enumerate(CLASSES)}


@pytest.fixture(scope="module")
def split():
    return generate_split("train", 120, S, seed=3)


def scenes_of(kind, n=40, seed=0):
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img, mask, k = generate_scene(rng, S, kind=kind)
        assert k == kind
        out.append((img, mask))
    return out


def distance_to(mask_bool):
    """Euclidean distance (px) of every pixel to the nearest True pixel."""
    return cv2.distanceTransform((~mask_bool).astype(np.uint8), cv2.DIST_L2, 5)


def test_deterministic_by_seed_and_independent_of_split_size():
    a = generate_split("train", 6, S, seed=7)
    b = generate_split("train", 6, S, seed=7)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = generate_split("train", 3, S, seed=7)  # image i does not depend on num_images
    np.testing.assert_array_equal(a[0][:3], c[0])
    d = generate_split("train", 6, S, seed=8)
    assert not np.array_equal(a[0], d[0])
    v = generate_split("val", 6, S, seed=7)  # train and val are different streams
    assert not any(np.array_equal(a[0][i], v[0][i]) for i in range(6))


def test_shapes_dtypes_and_ranges(split):
    images, masks, kinds = split
    assert images.shape == (120, S, S, 3) and images.dtype == np.uint8
    assert masks.shape == (120, S, S) and masks.dtype == np.uint8
    assert masks.max() < len(CLASSES)  # every pixel labelled, no 255
    assert set(np.unique(kinds)) == set(range(len(SCENE_TYPES)))
    assert images.std() > 20  # not blank


def test_every_class_appears(split):
    counts = np.bincount(split[1].ravel(), minlength=len(CLASSES))
    assert (counts > 0).all(), [c for c, n in zip(CLASSES, counts) if n == 0]


def test_roles_cover_every_class():
    assert set(ROLES) == set(CLASSES)
    assert set(ROLES.values()) == set(ROLE_NAMES)
    ids = sorted(i for r in ROLE_NAMES for i in classes_by_role(r))
    assert ids == list(range(len(CLASSES)))  # a partition
    assert classes_by_role("mismatched") == [ID["boat"], ID["car"]]
    assert classes_by_role("context") == [ID["boat"], ID["car"], ID["building"], ID["skyscraper"]]
    assert PALETTE.shape == (len(CLASSES), 3) and PALETTE.dtype == np.uint8
    assert len({tuple(p) for p in PALETTE}) == len(CLASSES)
    with pytest.raises(ValueError, match="unknown role"):
        classes_by_role("objects")


def test_dataset_interface_default_transform():
    ds = ContextScenes("val", num_images=4, image_size=64, seed=1)
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert y.shape == (64, 64) and y.dtype == torch.int64
    raw = torch.from_numpy(ds.images[0]).permute(2, 0, 1).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(x, (raw - mean) / std)
    assert torch.equal(y, torch.from_numpy(ds.masks[0]).long())
    assert len(ds) == 4 and ds.num_classes == 16 and ds.classes == CLASSES and ds.ignore_index == 255
    assert ds.roles[ID["buoy"]] == "regional" and ds.scene_types[0] in SCENE_TYPES


def test_dataset_passes_raw_arrays_to_transform():
    seen = []
    ds = ContextScenes("train", num_images=2, image_size=64, transform=lambda i, m: seen.append((i, m)) or (i, m))
    img, mask = ds[1]
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3) and mask.dtype == np.uint8 and mask.shape == (64, 64)


def test_mismatched_context_is_far_and_decides_the_label():
    gap = SceneConfig().context_distance * S
    n_boat = n_car = 0
    for _, mask in scenes_of("mismatched"):
        water, road = mask == ID["water"], mask == ID["road"]
        boat, car = mask == ID["boat"], mask == ID["car"]
        assert water.any() != road.any()  # exactly one context band
        assert not (boat.any() and car.any())
        if boat.any():
            assert water.any()  # boats only ever with water...
            n_boat += 1
        if car.any():
            assert road.any()  # ...cars only with road
            n_car += 1
        vehicles = boat | car
        # context lies beyond the local receptive field: no water/road within `gap` px of any vehicle
        assert distance_to(water | road)[vehicles].min() >= gap - 1
        # what IS within reach is the same for both classes: only grass and vehicles
        near = distance_to(vehicles) < gap - 2
        assert set(np.unique(mask[near])) <= {ID["grass"], ID["boat"], ID["car"]}
    assert n_boat > 5 and n_car > 5


def _draw(fn, label, *args, seed=0):
    c = draw._Canvas(S, np.random.default_rng(seed))
    c.paint("grass", (0, S, 0, S), 100.0)
    fn(c, label, *args)
    return c.img, c.mask


@pytest.mark.parametrize("fn,a,b,args", [
    (draw._vehicle, "boat", "car", (40, 30, 14, 22)),
    (draw._marker, "buoy", "traffic cone", (50, 60, 9)),
    (draw._facade, "building", "skyscraper", (20, 110, 30, 70)),
])
def test_look_alike_pairs_are_drawn_identically(fn, a, b, args):
    """The pairs differ only in their label: same pixels from the same random stream."""
    for seed in range(5):
        img_a, mask_a = _draw(fn, a, *args, seed=seed)
        img_b, mask_b = _draw(fn, b, *args, seed=seed)
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_array_equal(mask_a == ID[a], mask_b == ID[b])
        assert (mask_a == ID[a]).sum() > 50


def test_vehicle_appearance_same_distribution_in_generated_scenes():
    pix = {"boat": [], "car": []}
    for _, (img, mask) in enumerate(scenes_of("mismatched", n=80, seed=1)):
        for c in pix:
            if (mask == ID[c]).any():
                pix[c].append(img[mask == ID[c]].astype(float).mean(0))
    a, b = np.array(pix["boat"]), np.array(pix["car"])
    assert len(a) > 20 and len(b) > 20
    # per-object mean colour: same distribution (difference of means well within its sampling spread)
    se = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
    assert (np.abs(a.mean(0) - b.mean(0)) < 3.5 * se + 1).all()


def test_regional_label_follows_own_side():
    gap = SceneConfig().regional_distance * S
    for _, mask in scenes_of("regional"):
        if not np.isin(mask[0], [ID["water"], ID["road"]]).all():
            mask = mask.T  # halves side by side, bands along their top and bottom edges
        buoy, cone = mask == ID["buoy"], mask == ID["traffic cone"]
        assert buoy.any() and cone.any()  # both sides in every split scene: one global bin mixes them
        context = np.isin(mask, [ID["water"], ID["road"]])
        for half in (slice(0, S // 2), slice(S // 2, S)):
            band = set(np.unique(mask[:, half][context[:, half]]))
            assert band in ({ID["water"]}, {ID["road"]})  # each half is edged with one stuff...
            marker = (buoy if band == {ID["water"]} else cone)[:, half]
            other = (cone if band == {ID["water"]} else buoy)[:, half]
            assert marker.any() and not other.any()  # ...which decides the label of its markers
        assert distance_to(context)[buoy | cone].min() >= gap - 1  # beyond a small receptive field


def test_confusion_classes_differ_by_height_only():
    cfg = SceneConfig()
    for _, mask in scenes_of("confusion"):
        for name in ("building", "skyscraper"):
            m = (mask == ID[name]).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=4)
            for k in range(1, n):
                h = stats[k, cv2.CC_STAT_HEIGHT]
                if name == "building":
                    assert h <= round(cfg.building_max * S)
                else:
                    assert h >= round(cfg.skyscraper_min * S)
        assert not ((mask == ID["building"]).any() and (mask == ID["skyscraper"]).any())


def test_inconspicuous_objects_lie_on_their_stuff_with_close_colour():
    for img, mask in scenes_of("inconspicuous", n=20):
        for obj, under in (("pillow", "bed"), ("rug", "floor")):
            m = mask == ID[obj]
            assert m.any()
            ring = (cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~m
            assert (mask[ring] == ID[under]).all()  # lies on its stuff, surrounded by it
            diff = np.abs(img[m].astype(float).mean(0) - img[ring].astype(float).mean(0))
            assert diff.max() < 1.5 * SceneConfig().pillow_contrast  # a few grey levels (plus the seam)


def test_memory_and_disk_cache(tmp_path):
    cs._MEMORY_CACHE.clear()
    a = ContextScenes("train", 5, image_size=64, seed=2, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    b = ContextScenes("train", 5, image_size=64, seed=2, cache_dir=tmp_path)
    assert b.images is a.images  # memory hit
    cs._MEMORY_CACHE.clear()
    c = ContextScenes("train", 5, image_size=64, seed=2, cache_dir=tmp_path)  # disk hit
    assert c.images is not a.images
    np.testing.assert_array_equal(c.images, a.images)
    np.testing.assert_array_equal(c.masks, a.masks)
    assert c.scene_types == a.scene_types
    ContextScenes("train", 5, image_size=64, seed=2, cache_dir=tmp_path, config=SceneConfig(noise=3.0))
    assert len(list(tmp_path.glob("*.npz"))) == 2  # keyed by every parameter
    assert not list(tmp_path.glob("*.tmp"))


def test_image_size_scales_geometry():
    images, masks, _ = generate_split("val", 20, 96, seed=0)
    assert images.shape == (20, 96, 96, 3) and masks.max() < len(CLASSES)


def test_bad_input():
    with pytest.raises(ValueError, match="split"):
        generate_split("test", 2)
    with pytest.raises(ValueError, match="image_size"):
        ContextScenes("train", 2, image_size=16)
    with pytest.raises(ValueError, match="num_images"):
        generate_split("train", 0)
    with pytest.raises(ValueError, match="scene_probs"):
        SceneConfig(scene_probs=(1, 0, 0))
    with pytest.raises(ValueError, match="building_max"):
        SceneConfig(building_max=0.7, skyscraper_min=0.6)
    with pytest.raises(ValueError, match="scene kind"):
        generate_scene(np.random.default_rng(0), kind="kitchen")


def test_public_names_come_from_the_generator_modules():
    """context_scenes is the one import path; the classes and the drawing code live in their own modules."""
    assert set(cs.__all__) <= set(dir(cs))
    assert cs.CLASSES is scene_classes.CLASSES and cs.ROLES is scene_classes.ROLES
    assert cs.generate_scene is draw.generate_scene and cs.SceneConfig is draw.SceneConfig
    assert cs.GENERATOR_VERSION == draw.GENERATOR_VERSION
