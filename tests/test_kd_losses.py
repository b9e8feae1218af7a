"""The three distillation losses against hand computations on small tensors."""
import math

import pytest
import torch
from basicsr.losses import build_loss

from kd_plugin.distill.adapters import Adapter, build_adapters
from kd_plugin.losses.criteria import attention_map, spatial_affinity


def test_output_distill_criteria_by_hand():
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    t = torch.tensor([[[[1.5, 2.0], [2.0, -4.0]]]])
    # differences: -0.5, 0, 1, 8
    expected = {
        'l1': (0.5 + 0 + 1 + 8) / 4,
        'l2': (0.25 + 0 + 1 + 64) / 4,
        'charbonnier': sum(math.sqrt(d * d + 1e-6) for d in (0.5, 0.0, 1.0, 8.0)) / 4,
        'relative': (0.5 / (1.5 + 1e-3) + 0 + 1 / (2 + 1e-3) + 8 / (4 + 1e-3)) / 4,
    }
    for criterion, value in expected.items():
        loss = build_loss({'type': 'OutputDistillLoss', 'loss_weight': 2.0, 'criterion': criterion})
        assert loss(s, t).item() == pytest.approx(2.0 * value, rel=1e-6), criterion


def test_unknown_criterion_names_the_option():
    with pytest.raises(ValueError, match=r'train.distill_opt.criterion: unknown criterion .ssim.; choose one of l1'):
        build_loss({'type': 'OutputDistillLoss', 'criterion': 'ssim'})
    with pytest.raises(ValueError, match=r'train.feature_opt.criterion'):
        build_loss({'type': 'FeatureMatchingLoss', 'criterion': 'kl', 'pairs': [{'student': 'a', 'teacher': 'b'}]})


def test_fakd_affinity_by_hand():
    # two pixels with channel vectors (3, 4) and (1, 0): unit vectors (0.6, 0.8) and (1, 0)
    feat = torch.tensor([[[[3.0, 1.0]], [[4.0, 0.0]]]])  # [B=1, C=2, H=1, W=2]
    affinity = spatial_affinity(feat)
    torch.testing.assert_close(affinity, torch.tensor([[[1.0, 0.6], [0.6, 1.0]]]))
    # the teacher has 3 channels: FAKD compares affinities, no adapter needed
    teacher = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])  # orthogonal pixels: [[1, 0], [0, 1]]
    loss = build_loss({'type': 'FeatureMatchingLoss', 'criterion': 'fakd',
                       'pairs': [{'student': 's', 'teacher': 't'}]})
    adapters = build_adapters([('pair', feat.shape, teacher.shape)], False, True, None, True)
    assert adapters['features'][0].conv is None
    assert loss([feat], [teacher]).item() == pytest.approx((0 + 0.6 + 0.6 + 0) / 4)


def test_attention_maps_by_hand():
    # mean over channels of f^2 per pixel: pixel 0 (1, 1) -> 1, pixel 1 (2, 0) -> 2, then L2-normalised
    feat = torch.tensor([[[[1.0, 2.0]], [[1.0, 0.0]]]])
    torch.testing.assert_close(attention_map(feat), torch.tensor([[1 / math.sqrt(5), 2 / math.sqrt(5)]]))
    teacher = torch.tensor([[[[1.0, 0.0]]]])  # one channel: map (1, 0)
    loss = build_loss({'type': 'FeatureMatchingLoss', 'criterion': 'at', 'loss_weight': 3.0,
                       'pairs': [{'student': 's', 'teacher': 't', 'weight': 0.5}]})
    expected = ((1 / math.sqrt(5) - 1) ** 2 + (2 / math.sqrt(5)) ** 2) / 2
    assert loss([feat], [teacher]).item() == pytest.approx(3.0 * 0.5 * expected, rel=1e-6)


def test_fitnet_l2_with_adapter_and_weights():
    loss = build_loss({'type': 'FeatureMatchingLoss', 'criterion': 'l2', 'loss_weight': 0.5, 'normalize': 'none',
                       'pairs': [{'student': 'a', 'teacher': 'b', 'weight': 2.0}, {'student': 'c', 'teacher': 'd'}]})
    s1, t1 = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    s2, t2 = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2)
    pairs = [('a', s1.shape, t1.shape), ('c', s2.shape, t2.shape)]
    adapters = build_adapters(pairs, True, True, None, True)['features']
    conv = adapters[0].conv
    assert conv.in_channels == 3 and conv.out_channels == 5 and adapters[1].conv is None
    expected = 0.5 * (2.0 * (conv(s1) - t1).square().mean() + (s2 - t2).square().mean())
    torch.testing.assert_close(loss([adapters[0](s1), adapters[1](s2)], [t1, t2]), expected)


def test_adapter_resizes_or_rejects_spatial_mismatch():
    adapter = Adapter(torch.Size([1, 4, 8, 8]), torch.Size([1, 4, 16, 16]), 'opt')
    assert adapter(torch.randn(1, 4, 8, 8), (16, 16)).shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match='opt: spatial sizes differ'):
        Adapter(torch.Size([1, 4, 8, 8]), torch.Size([1, 4, 16, 16]), 'opt', resize=False)
    with pytest.raises(ValueError, match='not both'):
        Adapter(torch.Size([1, 27, 8, 6, 8]), torch.Size([1, 54, 8, 6, 8]), 'opt')


def test_feature_pairs_are_validated():
    with pytest.raises(ValueError, match=r'pairs\[0\]\.studnet: unknown key; did you mean `student`\?'):
        build_loss({'type': 'FeatureMatchingLoss', 'pairs': [{'studnet': 'a', 'teacher': 'b'}]})
    with pytest.raises(ValueError, match=r'pairs\[0\]: missing key\(s\) teacher'):
        build_loss({'type': 'FeatureMatchingLoss', 'pairs': [{'student': 'a'}]})
    with pytest.raises(ValueError, match='at least one'):
        build_loss({'type': 'FeatureMatchingLoss', 'pairs': []})


def test_features_standardised_by_the_teacher_statistics_by_hand_and_scale_free():
    loss = build_loss({'type': 'FeatureMatchingLoss', 'criterion': 'l1', 'pairs': [{'student': 'a', 'teacher': 'b'}]})
    assert loss.normalize == 'teacher'  # the default for element-wise criteria
    teacher = torch.tensor([[[[1.0, 3.0]], [[10.0, 30.0]]]])  # channel 0: mean 2, std 1; channel 1: mean 20, std 10
    student = torch.tensor([[[[2.0, 2.0]], [[20.0, 40.0]]]])
    # standardised: teacher (-1, 1) and (-1, 1); student (0, 0) and (0, 2): |d| = 1, 1, 1, 1
    assert loss([student], [teacher]).item() == pytest.approx(1.0, rel=1e-5)
    # one loss weight for every feature scale: EDSR's features live on a 0-255 scale
    torch.manual_seed(0)
    s, t = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    assert loss([s * 255], [t * 255]).item() == pytest.approx(loss([s], [t]).item(), rel=1e-4)
    grid = build_loss({'type': 'FeatureMatchingLoss', 'pairs': [{'student': 'g', 'teacher': 'g'}]})
    assert grid([torch.randn(1, 27, 8, 3, 3)], [torch.randn(1, 27, 8, 3, 3)]).item() > 0  # 5-D grids too
    with pytest.raises(ValueError, match='train.feature_opt.normalize: teacher does not apply to criterion fakd'):
        build_loss({'type': 'FeatureMatchingLoss', 'criterion': 'fakd', 'normalize': 'teacher',
                    'pairs': [{'student': 'a', 'teacher': 'b'}]})


def test_fakd_pools_large_maps_to_a_bounded_affinity():
    from kd_plugin.losses.criteria import FAKD_MAX_POSITIONS, pooled_for_affinity

    assert pooled_for_affinity(torch.rand(1, 2, 64, 64)).shape[-2:] == (64, 64)  # 4096 positions: kept
    pooled = pooled_for_affinity(torch.rand(1, 2, 100, 130))  # 13000 positions -> k = 2: 50 x 65 = 3250
    assert pooled.shape[-2:] == (50, 65) and 50 * 65 <= FAKD_MAX_POSITIONS
    feat = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(pooled_for_affinity(feat, max_positions=4), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def _shipped_feature(arch: dict, checkpoint: str, layer: str) -> torch.Tensor:
    """The output of ``layer`` of a shipped teacher on a 48x48 crop of Set5's x4 ``baby``."""
    import cv2
    from basicsr.archs import build_network

    from tests.helpers import ROOT, shared_data

    net = build_network(dict(arch))
    net.load_state_dict(torch.load(f'{ROOT}/checkpoints/{checkpoint}')['params'])
    img = cv2.imread(shared_data('Set5', 'LR_bicubic', 'X4', 'baby.png'))[40:88, 40:88, ::-1] / 255.0
    out = {}
    dict(net.eval().named_modules())[layer].register_forward_hook(lambda m, a, o: out.setdefault('f', o))
    with torch.no_grad():
        net(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float())
    return out['f']


def test_standardising_floors_near_constant_channels_and_one_weight_fits_both_teachers():
    """The shipped HDRNet teacher has dead channels (std 0) at ``coeffs.splat``: dividing by ``std + 1e-6``
    made a student within 0.01 of it cost 4.8e7 (l2). The floor keeps that bounded and scale-free."""
    hdrnet = _shipped_feature({'type': 'HDRNet', 'upscale': 4}, 'HDRNet_T91_x4_12k.pth', 'coeffs.splat')
    edsr = _shipped_feature({'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16,
                             'upscale': 4, 'img_range': 255.0, 'rgb_mean': [0.4488, 0.4371, 0.4040]},
                            'EDSR_64x16_T91_x4_12k.pth', 'conv_after_body')
    std = hdrnet.std(dim=(0, 2, 3), unbiased=False)
    assert (std == 0).sum() >= 30  # what made the old normalisation blow up
    loss = build_loss({'type': 'FeatureMatchingLoss', 'criterion': 'l2', 'pairs': [{'student': 's', 'teacher': 't'}]})
    torch.manual_seed(0)
    near = (hdrnet + (torch.rand_like(hdrnet) * 2 - 1) * 0.01).requires_grad_()
    value = loss([near], [hdrnet])
    assert 0 < value.item() < 1.0
    value.backward()
    assert torch.isfinite(near.grad).all() and near.grad[:, std == 0].abs().sum() == 0  # dead channels: left out
    # the same relative error (5 % of each feature's typical channel spread) costs about the same on
    # EDSR's 0-255 features and on HDRNet's, so one loss_weight fits both
    costs = []
    for feat in (hdrnet, edsr):
        typical = feat.std(dim=(0, 2, 3), unbiased=False).square().mean().sqrt()
        costs.append(loss([feat + torch.randn_like(feat) * 0.05 * typical], [feat]).item())
    assert edsr.abs().max() > 50 * hdrnet.abs().max()  # the two scales really differ
    assert 0.2 < costs[0] / costs[1] < 5, costs
