"""The SR archs the plugin's archs are compared with: ours and BasicSR's peers, as options sections."""


def peer_specs(scale: int, everything: bool = False) -> dict[str, dict]:
    """Our two archs and the BasicSR peers of the README's benchmark (``everything``), or the two small
    ones the student is usually compared with."""
    specs = {
        'HDRNet': {'type': 'HDRNet', 'upscale': scale},
        'DeformableHDRNet': {'type': 'DeformableHDRNet', 'upscale': scale},
        'EDSR (32x4)': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 32, 'num_block': 4,
                        'upscale': scale},
        'SRVGGNetCompact': {'type': 'SRVGGNetCompact', 'upscale': scale},
    }
    if everything:
        specs.update({
            'EDSR (64x16)': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 64, 'num_block': 16,
                             'upscale': scale},
            'MSRResNet': {'type': 'MSRResNet', 'upscale': scale},
            'ECBSR (M4C16)': {'type': 'ECBSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_block': 4, 'num_channel': 16,
                              'with_idt': False, 'act_type': 'prelu', 'scale': scale},
            'RCAN (small)': {'type': 'RCAN', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 32, 'num_group': 3,
                             'num_block': 4, 'squeeze_factor': 8, 'upscale': scale, 'res_scale': 1,
                             'img_range': 255.0},
        })
    return specs
