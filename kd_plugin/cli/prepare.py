"""Data preparation: ``python -m kd_plugin.cli.prepare {lr,lmdb,crop,div2k,split,merge,photos,teacher-labels}
...`` (``--help`` on each)."""
import argparse
import sys
from os import path as osp

from tqdm import tqdm

from kd_plugin.cli.common import Parser, tool
from kd_plugin.data.bundled_photos import prepare_photos
from kd_plugin.data.degradations import DEGRADATIONS
from kd_plugin.data.div2k import prepare_div2k
from kd_plugin.data.holdout import split_pairs
from kd_plugin.data.label_cache import (
    build_label_set,
    default_output,
    ensemble_in_name,
    label_jobs,
    load_teachers,
    named_output,
)
from kd_plugin.data.lmdb_builder import build_paired_lmdbs
from kd_plugin.data.lr_generation import make_lr_pairs
from kd_plugin.data.merge import merge_pairs
from kd_plugin.data.mixed_kd_dataset import MIXED
from kd_plugin.data.subimages import crop_subimages
from kd_plugin.device import DEVICE_CHOICES, pick_device
from kd_plugin.distill.teacher_labels import ENSEMBLES
from kd_plugin.runs import load_options


def _scales(text: str) -> int:
    scale = int(text)
    if scale not in (2, 3, 4, 8):
        raise argparse.ArgumentTypeError(f'scale must be 2, 3, 4 or 8, got {scale}')
    return scale


def build_parser() -> argparse.ArgumentParser:
    parser = Parser('python -m kd_plugin.cli.prepare', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)

    lr = sub.add_parser('lr', help='HR folder -> OUT/X{s}/HR (modcropped) and OUT/X{s}/LR (BI, BD or DN)',
                        description='Make LR images exactly like the standard SR benchmarks: modcrop, then '
                        'MATLAB imresize bicubic (antialiased, uint8 rounding after each pass), or RDN\'s BD or DN '
                        'degradation. Reads PNG, JPEG (e.g. BSD400\'s originals), BMP and the other formats OpenCV '
                        'reads; always writes lossless PNG pairs named <stem>.png, and OUT/X{s}/degradation.json.')
    lr.add_argument('--input', required=True, help='folder of HR images (PNG, JPEG, BMP, ...)')
    lr.add_argument('--output', required=True, help='writes OUTPUT/X{s}/HR and OUTPUT/X{s}/LR')
    lr.add_argument('--scales', type=_scales, nargs='+', default=[4], help='e.g. --scales 2 3 4 (default: 4)')
    lr.add_argument('--degradation', choices=DEGRADATIONS, default='bi',
                    help='bi: MATLAB bicubic (default); bd: 7x7 Gaussian blur (sigma 1.6), then nearest downscale; '
                         'dn: bicubic, then Gaussian noise (sigma 30) drawn from --seed and each image\'s name')
    lr.add_argument('--seed', type=int, default=0, help='the noise seed of --degradation dn (default 0)')
    lr.add_argument('--overwrite', action='store_true', help='replace existing output files')

    lm = sub.add_parser('lmdb', help='image folder(s) -> BasicSR LMDB(s)',
                        description='Write BasicSR LMDBs (data.mdb + meta_info.txt, key = file stem). Give '
                        '--input/--output once per folder; several folders (e.g. HR and LR) must hold the '
                        'same file names, which is checked before anything is written.')
    lm.add_argument('--input', action='append', required=True, help='image folder (repeatable)')
    lm.add_argument('--output', action='append', required=True, help='LMDB path ending in .lmdb (repeatable)')
    lm.add_argument('--overwrite', action='store_true', help='replace an existing LMDB once the new one is complete')

    cr = sub.add_parser('crop', help='large images -> overlapping sub-images',
                        description='Crop training images (e.g. DIV2K HR) into SIZE x SIZE tiles every STEP px; '
                        'then run `lr` on the tiles.')
    cr.add_argument('--input', required=True)
    cr.add_argument('--output', required=True)
    cr.add_argument('--size', type=int, default=480)
    cr.add_argument('--step', type=int, default=240)
    cr.add_argument('--min-size', type=int, default=0, help='skip edge tiles smaller than this')

    dv = sub.add_parser('div2k', help="DIV2K as downloaded -> BasicSR's sub-images (and LMDBs)",
                        description="From ROOT/DIV2K_train_HR and ROOT/DIV2K_train_LR_bicubic/X{s} as downloaded, "
                        "writes BasicSR's DIV2K_train_HR_sub, DIV2K_train_LR_bicubic/X{s}_sub (480 px HR crops every "
                        "240 px) and with --lmdb DIV2K_train_HR_sub.lmdb and DIV2K_train_LR_bicubic_X{s}_sub.lmdb. "
                        'Checks that HR and LR sub-images pair up. Resumable: run it again after an interruption; '
                        'finished outputs are never overwritten.')
    dv.add_argument('--root', default='datasets/DIV2K', help='the folder holding DIV2K_train_HR (default: %(default)s)')
    dv.add_argument('--scales', type=_scales, nargs='+', default=[2, 4])
    dv.add_argument('--lmdb', action='store_true', help="also write BasicSR's LMDBs")

    sp = sub.add_parser('split', help='paired folders -> training part + held-out part (for choosing settings)',
                        description='Copies INPUT/{HR,LR} to OUTPUT/{train,val}/{HR,LR} with --holdout pairs, '
                        'drawn with --seed, in val: compare settings on val, never on the test sets you report.')
    sp.add_argument('--input', required=True, help='a folder with HR/ and LR/ (e.g. datasets/T91/X4)')
    sp.add_argument('--output', required=True)
    sp.add_argument('--holdout', type=int, default=10, help='pairs to hold out (default 10)')
    sp.add_argument('--seed', type=int, default=0)

    mg = sub.add_parser('merge', help='several paired folders -> one (links, no copies)',
                        description='Links INPUT/{HR,LR}/* of every --input into OUTPUT/{HR,LR} (relative symlinks), '
                        'e.g. T91 and the training part of BSD400 into one training set. Names must be unique across '
                        'the inputs. --min-size leaves out (and lists) pairs whose HR is smaller than a patch.')
    mg.add_argument('--input', action='append', required=True, help='a folder with HR/ and LR/ (repeatable)')
    mg.add_argument('--output', required=True)
    mg.add_argument('--min-size', type=int, default=0,
                    help='leave out pairs whose shorter HR side is below this (e.g. the largest gt_size to train with)')

    ph = sub.add_parser('photos', help="paired data from scikit-image's bundled photographs (no download)",
                        description='Writes OUTPUT/{train,val}/HR, OUTPUT/{train,val}/X{s}/{HR,LR} and, with '
                        '--lmdb, OUTPUT/train/X{s}/{HR,LR}.lmdb. Skips work already complete.')
    ph.add_argument('--output', default='datasets/photos')
    ph.add_argument('--scales', type=_scales, nargs='+', default=[4])
    ph.add_argument('--lmdb', action='store_true', help='also write LMDBs of the training pairs')

    tl = sub.add_parser('teacher-labels', help="a KD file's teacher run once on every whole training LR image",
                        description='Runs the KD options file\'s network_t (its checkpoint, its train.teacher fast '
                        'path) on every whole LR image of its datasets.train (folder or LMDB) and writes 8-bit PNG '
                        'labels named like the GT (like the LR image in a set without GT: an LR-only source of a '
                        'MixedKDDataset), with manifest.json (teachers and their SHA-256, scale, ensemble, LR source, '
                        'image names, whether there is GT); a multi-task or mixed file has each of its training sets '
                        'labelled into the set its dataroot_teacher names; --lmdb adds OUTPUT.lmdb, --npy adds '
                        'OUTPUT.npy (uncompressed arrays that training reads crop-only: the fastest to load). Point '
                        'datasets.train.dataroot_teacher at the result (type: KDPairedImageDataset). Resumable; a '
                        'finished output is kept unless --overwrite. Relative paths in the options file are read '
                        'from the current folder.')
    tl.add_argument('-opt', required=True, help='a KD options file (model_type: KDModel)')
    tl.add_argument('--ensemble', choices=tuple(ENSEMBLES), default='x8',
                    help='x8: mean over the 8 flips/rotations (default); none: one pass')
    tl.add_argument('--teacher', action='append', metavar='SPEC',
                    help='OPTIONS.yml[@CHECKPOINT.pth] of a teacher (its network_g); repeat for several teachers, '
                         'whose outputs are averaged per pixel. Default: the file\'s network_t')
    tl.add_argument('--output', help='label folder (default: where the file\'s datasets.train.dataroot_teacher '
                                     'points, without its .npy/.lmdb suffix; without one, labels_<teacher>_<ensemble> '
                                     'beside dataroot_gt)')
    tl.add_argument('--lmdb', action='store_true', help='also write OUTPUT.lmdb')
    tl.add_argument('--npy', action='store_true',
                    help='also write OUTPUT.npy: every label in one uncompressed file (labels.u8, with index.json), '
                         'memory-mapped so that a training sample reads only its crop (3 bytes per HR pixel on disk; '
                         'no PNG decode per step). Implied when dataroot_teacher names a .npy store')
    tl.add_argument('--tile', type=int, default=0,
                    help='LR tile side for images that do not fit memory (default 0: whole images; archs with a '
                         'global path, such as HDRNet, give other labels when tiled)')
    tl.add_argument('--tile-overlap', type=int, default=16, help='LR px of context on each side of a tile')
    tl.add_argument('--fp32', action='store_true', help='run the teachers in fp32 whatever train.teacher.autocast says')
    tl.add_argument('--device', default='auto', choices=DEVICE_CHOICES, help='auto (CUDA when available), cpu or cuda')
    tl.add_argument('--overwrite', action='store_true',
                    help='replace a finished label set once the new one is complete')
    return parser


def check_named_ensemble(named: str, ensemble: str) -> None:
    """Refuse ``--ensemble`` where the label set the options file names says another one (``labels_<teacher>_x8``
    built with ``--ensemble none`` would carry a name that lies about it)."""
    try:
        in_name = ensemble_in_name(named)
    except ValueError:
        return  # a name of the user's own choosing: nothing to contradict
    if in_name != ensemble:
        raise ValueError(f'--ensemble {ensemble}: datasets.train.dataroot_teacher {named!r} names a {in_name} label '
                         f'set. Fix: --ensemble {in_name}, or point dataroot_teacher at labels_<teacher>_{ensemble}, '
                         'or give --output')


def teacher_labels(args: argparse.Namespace) -> None:
    """``prepare teacher-labels``: see its ``--help``. A multi-task file (``MultiTaskKDDataset``) has each task's
    labels built with the task's own teacher, into the label set its ``dataroot_teacher`` names; a mixed file
    (``MixedKDDataset``) each source's, paired or LR-only, with the file's teacher (or ``--teacher``'s)."""
    device = pick_device(args.device)
    opt = load_options(args.opt)
    jobs = label_jobs(opt)
    mixed = ((opt.get('datasets') or {}).get('train') or {}).get('type') == MIXED
    if len(jobs) > 1 and not mixed and (args.output or args.teacher):
        raise ValueError('--output/--teacher: a multi-task file labels each task with its own teacher into the set its '
                         'dataroot_teacher names. Fix: leave out --output and --teacher')
    if len(jobs) > 1 and args.output:
        raise ValueError(f'--output: this file\'s training set has {len(jobs)} sources ({", ".join(jobs)}), each '
                         'labelled into the set its dataroot_teacher names. Fix: leave out --output')
    for task, job in jobs.items():
        try:
            teachers, precision = load_teachers(job, args.teacher, device, args.fp32)
        except ValueError as err:
            raise ValueError(f'-opt {args.opt}: {err}') from err
        train_set = job['datasets']['train']
        named = None if args.output else train_set.get('dataroot_teacher')  # labels go where the file reads them
        if named:
            check_named_ensemble(named, args.ensemble)
        output = args.output or named_output(named) or default_output(train_set, teachers, args.ensemble)
        npy = args.npy or bool(named and osp.normpath(named).endswith('.npy'))
        lmdb = args.lmdb or bool(named and osp.normpath(named).endswith('.lmdb'))
        desc = f'teacher labels ({task})' if task else 'teacher labels'
        manifest = build_label_set(train_set, opt['scale'], teachers, args.ensemble, output, device, precision,
                                   args.tile, args.tile_overlap, lmdb, args.overwrite, npy,
                                   progress=lambda items, desc=desc: tqdm(items, desc=desc, unit='image'),
                                   reuse=task is not None)  # a task's set may be built already, e.g. by its own file
        print(f'{f"{task}: " if task else ""}{output}: {manifest["count"]} labels ({args.ensemble}, '
              f'{manifest["seconds"]} s on {device})' + (f'; {output}.lmdb' if lmdb else '')
              + (f'; {output}.npy' if npy else ''), flush=True)


@tool('prepare')
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == 'lr':
        for s, folder in make_lr_pairs(args.input, args.output, args.scales, args.overwrite, args.degradation,
                                       args.seed).items():
            print(f'x{s}: {folder}/HR, {folder}/LR')
    elif args.command == 'lmdb':
        if len(args.input) != len(args.output):
            raise ValueError('lmdb: give one --output per --input')
        build_paired_lmdbs(list(zip(args.input, args.output)), overwrite=args.overwrite)
    elif args.command == 'div2k':
        pairs = prepare_div2k(args.root, args.scales, args.lmdb)
        print(', '.join(f'{scale}: {count} sub-image pairs' for scale, count in pairs.items()))
    elif args.command == 'split':
        parts = split_pairs(args.input, args.output, args.holdout, args.seed)
        print(f'{args.output}/train: {len(parts["train"])} pairs; {args.output}/val: {", ".join(parts["val"])}')
    elif args.command == 'merge':
        parts = merge_pairs(args.input, args.output, args.min_size)
        skipped = parts['skipped']
        print(f'{args.output}: {len(parts["kept"])} pairs' +
              (f'; left out (HR under {args.min_size} px): {", ".join(skipped)}' if skipped else ''))
    elif args.command == 'crop':
        print(f'{crop_subimages(args.input, args.output, args.size, args.step, args.min_size)} sub-images written')
    elif args.command == 'teacher-labels':
        teacher_labels(args)
    else:
        prepare_photos(args.output, args.scales, args.lmdb)
    return 0


if __name__ == '__main__':
    sys.exit(main())
