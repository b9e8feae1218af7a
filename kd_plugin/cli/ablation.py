"""What distillation bought: ``python -m kd_plugin.cli.ablation -opt <KD options file> --seeds 0 1 2``.

Trains, per seed, the student alone, the student alone for the recipe's measured time, the recipe and on
request each ingredient alone or left out, scores them on the test sets and writes ``ablation.md`` and
``ablation.json`` (:mod:`kd_plugin.ablation`). Interrupted ablations continue; finished runs are skipped.
"""
import sys

from kd_plugin.ablation.runner import checked_request, run_ablation, with_overrides
from kd_plugin.cli.common import Parser, add_sets, output_dir, tool
from kd_plugin.runs import load_options


@tool('ablation')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.ablation', description=__doc__.splitlines()[0])
    parser.add_argument('-opt', required=True, help='a KD options file (model_type: KDModel): the recipe')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0], help='manual_seed of each repetition')
    parser.add_argument('--variants', nargs='+', help='default: no_kd, no_kd_equal_time, (init_only,) recipe; '
                                                      '"all" for every variant the recipe allows')
    parser.add_argument('--teacher', help='override path.pretrain_network_t')
    parser.add_argument('--total-iter', type=int,
                        help='override train.total_iter of the recipe (and of every run); the runs are then named '
                             '<name>_<N>it_ablation_<variant>_s<seed>')
    add_sets(parser, ['Set5', 'Set14'])
    parser.add_argument('--output', help='default: results/ablation_<name>')
    args = parser.parse_args(argv)
    recipe = load_options(args.opt)
    variants = checked_request(recipe, args.variants, args.seeds)
    recipe = with_overrides(recipe, args.teacher, args.total_iter)
    out = output_dir(args.output, f'ablation_{recipe["name"]}')
    text = run_ablation(recipe, args.opt, variants, args.seeds, args.total_iter or recipe['train']['total_iter'],
                        args.sets, args.data_root, out)
    print(text)
    print(f'wrote {out}/ablation.md and ablation.json')
    return 0


if __name__ == '__main__':
    sys.exit(main())
