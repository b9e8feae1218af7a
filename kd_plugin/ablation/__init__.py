"""What distillation bought: ``python -m kd_plugin.cli.ablation -opt <KD options file> --seeds 0 1 2``.

From one KD options file (the recipe) it trains, per seed, the student alone, the recipe, the student
alone for the recipe run's measured training time (:mod:`.equal_time`), and on request each ingredient
alone or left out (:mod:`.variants`), all through ``kd_plugin/cli/train.py`` with ``--auto_resume`` (an interrupted
ablation continues; finished runs are skipped). It then scores every final student, the teacher and
bicubic on the test sets and writes ``<output>/ablation.md`` and ``ablation.json``: mean ± std over
seeds per set, and each variant's paired difference to the student alone with its standard error
(:mod:`.seed_stats`).
"""
