import numpy as np
import torch

from robolearn.nn.ema import EMA
from robolearn.nn.normalizer import Normalizer, select_stats
from robolearn.nn.obs_encoder import EncoderConfig, ObsEncoder
from robolearn.nn.unet1d import ConditionalUnet1D
from robolearn.nn.vision import ResNetImageEncoder, SpatialSoftmax, crop_images

torch.set_num_threads(1)


def test_random_crop_differs_per_frame_and_center_crop_is_fixed():
    torch.manual_seed(0)
    x = torch.arange(4 * 10 * 10 * 1, dtype=torch.float32).reshape(4, 10, 10, 1).repeat(1, 1, 1, 1)
    x = torch.stack([x[0]] * 4)  # four identical frames
    rand = crop_images(x, 6, random=True)
    assert rand.shape == (4, 6, 6, 1)
    assert len({tuple(r.flatten().tolist()) for r in rand}) > 1  # different offsets per frame
    center = crop_images(x, 6, random=False)
    assert torch.equal(center[0], x[0, 2:8, 2:8])


def test_resnet_encoder_shapes_groupnorm_and_train_eval_crop():
    enc = ResNetImageEncoder(in_channels=3, width=8, out_dim=16, num_kp=4, crop_size=28)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
    imgs = torch.randint(0, 255, (5, 32, 32, 3), dtype=torch.uint8)
    assert enc(imgs).shape == (5, 16)
    enc.eval()
    assert torch.equal(enc(imgs), enc(imgs))  # center crop at eval: deterministic
    avg = ResNetImageEncoder(width=8, out_dim=16, pooling="avg", crop_size=0)
    assert avg(imgs).shape == (5, 16)


def test_spatial_softmax_finds_the_peak():
    ss = SpatialSoftmax(1, 1)
    with torch.no_grad():
        ss.proj.weight.fill_(1.0)
        ss.proj.bias.zero_()
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 8, 0] = 100.0  # bottom-left corner
    kp = ss(x)
    assert torch.allclose(kp, torch.tensor([[-1.0, 1.0]]), atol=1e-3)


def test_obs_encoder_fuses_cameras_and_shares_weights_on_request():
    shapes = {"a_image": [24, 24, 3], "b_image": [24, 24, 3]}
    cfg = EncoderConfig(image_width=8, image_feature_dim=12, num_keypoints=4, crop_size=20)
    sep = ObsEncoder(cfg, {"proprio": 5}, shapes)
    cfg.shared_image_encoder = True
    shared = ObsEncoder(cfg, {"proprio": 5}, shapes)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(shared) < n(sep)
    obs = {"proprio": torch.randn(2, 3, 5), **{k: torch.randint(0, 255, (2, 3, 24, 24, 3), dtype=torch.uint8) for k in shapes}}
    for enc in (sep, shared):
        assert enc(obs).shape == (2, 3, 5 + 2 * 12)
        assert [p.shape[-1] for p in enc.parts(obs)] == [5, 12, 12]


def test_normalizer_matches_the_store_normalizer():
    from robolearn.datasets.normalize import Normalizer as StoreNormalizer

    stats = {"a": {"min": [0.0, -2.0, 1.0], "max": [4.0, 2.0, 1.0], "mean": [1.0, 0.0, 1.0], "std": [2.0, 1.0, 0.0]}}
    x = np.array([[0.5, -1.0, 1.0], [4.0, 2.0, 1.0]], np.float32)
    for mode in ("minmax", "meanstd"):
        ours = Normalizer(select_stats(stats, {"a": mode}))
        y = ours.normalize("a", torch.from_numpy(x))
        assert torch.allclose(ours.unnormalize("a", y), torch.from_numpy(x), atol=1e-6)
        theirs = StoreNormalizer.from_stats(stats, {"a": mode}).normalize("a", x)
        np.testing.assert_allclose(y.numpy(), np.asarray(theirs), atol=1e-5)
        reloaded = StoreNormalizer.from_dict(ours.to_dict())  # our stats.json loads in the store's normaliser
        np.testing.assert_allclose(np.asarray(reloaded.normalize("a", x)), y.numpy(), atol=1e-5)


def test_unet_output_shape_and_ema_tracks_weights():
    net = ConditionalUnet1D(action_dim=3, cond_dim=7, down_dims=[16, 32], step_embed_dim=16)
    x = torch.randn(2, 8, 3)
    assert net(x, torch.tensor([0, 5]), torch.randn(2, 7)).shape == (2, 8, 3)
    lin = torch.nn.Linear(2, 2)
    ema = EMA(lin, max_decay=0.5, warmup=False)
    with torch.no_grad():
        lin.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(lin)
    assert torch.allclose(ema.model.weight, 0.5 * before + 0.5 * lin.weight)
