"""The package's structure, read from its source: library and tools apart, one network builder, one
``KDConfig``, BasicSR rebound only in ``compat/``, imports at the top."""
import ast
import os
import re
from os import path as osp

import pytest

from tests.helpers import ROOT

PACKAGE = osp.join(ROOT, 'kd_plugin')
#: imported inside functions on purpose: optional dependencies (the ``[export]`` extra)
OPTIONAL = ('onnx', 'onnxruntime', 'onnxscript')
#: imported late on purpose: torch's C++ extension loader (it warns about CUDA on import; only the fused kernel's
#: first build needs it)
LATE = ('torch.utils.cpp_extension', 'torch.utils')


def modules() -> dict[str, ast.Module]:
    """``{dotted module name: parsed source}`` of every module under kd_plugin/."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                dotted = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.').removesuffix('.__init__')
                with open(path) as f:
                    found[dotted] = ast.parse(f.read(), path)
    return found


MODULES = modules()
TOOLS = sorted(m for m in MODULES if m.startswith('kd_plugin.cli.') and m != 'kd_plugin.cli.common')


def imported(tree: ast.Module) -> set[str]:
    """Every module an ``import`` statement of ``tree`` names (``from a import b``: ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f'{node.module}.{alias.name}' for alias in node.names)
    return names


def test_the_tools_are_the_cli_package_and_every_tool_starts():
    assert set(TOOLS) >= {f'kd_plugin.cli.{t}' for t in ('train', 'test', 'prepare', 'demo', 'infer', 'export',
                                                           'benchmark', 'ablation', 'gpu_check', 'kd_overhead')}
    for tool in TOOLS:
        tree = MODULES[tool]
        assert any(isinstance(n, ast.If) and 'main' in ast.unparse(n.test) for n in tree.body), \
            f'{tool} has no `if __name__ == "__main__"` entry'


@pytest.mark.parametrize('module', sorted(MODULES))
def test_no_library_module_imports_a_tool_and_no_tool_imports_another(module):
    forbidden = TOOLS if module.startswith('kd_plugin.cli') else [*TOOLS, 'kd_plugin.cli.common']
    bad = {name for name in imported(MODULES[module]) for tool in forbidden
           if (name == tool or name.startswith(tool + '.')) and name != module}
    assert not bad, f'{module} imports command-line modules {sorted(bad)}'


@pytest.mark.parametrize('module', sorted(m for m in MODULES if not m.startswith('kd_plugin.compat')))
def test_imports_are_at_the_top_unless_optional(module):
    """Inside functions only optional dependencies are imported (compat/ imports BasicSR late on purpose:
    its import fixes must run first)."""
    nested = []
    for node in ast.walk(MODULES[module]):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in inner.names] if isinstance(inner, ast.Import) else [inner.module]
                    nested += [n for n in names if n.split('.')[0] not in OPTIONAL and n not in LATE]
    assert not nested, f'{module} imports {nested} inside functions'


def test_one_network_builder():
    """Only ``archs/build.py`` looks archs up in BasicSR's registry or defines a network builder, and no module
    builds through BasicSR's own ``build_network``."""
    for module, tree in MODULES.items():
        source = ast.unparse(tree)
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if module != 'kd_plugin.archs.build':
            assert 'ARCH_REGISTRY.get(' not in source, module
            assert not defined & {'build_network', 'construct_network', 'build_arch'}, module
        assert 'basicsr.archs.build_network' not in imported(tree) or module.startswith('kd_plugin.compat'), module


def test_one_kd_config_read_by_the_checks_and_the_model():
    owners = [m for m, tree in MODULES.items()
              for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == 'KDConfig']
    assert owners == ['kd_plugin.models.kd_config']
    for user in ('kd_plugin.preflight', 'kd_plugin.models.kd_model'):
        assert 'KDConfig.from_options(' in ast.unparse(MODULES[user]), user
    readers = [m for m, tree in MODULES.items() if "'pretrain_network_t'" in ast.unparse(tree)
               and 'load_weights_only' in ast.unparse(tree)]
    assert readers == [], f'the teacher checkpoint is read outside KDConfig in {readers}'


def test_one_unknown_key_check():
    for module, tree in MODULES.items():
        if module != 'kd_plugin.option_keys':
            assert 'unknown key' not in ast.unparse(tree), f'{module} words its own unknown-key error'


def _basicsr_names(tree: ast.Module) -> set[str]:
    """Local names bound to BasicSR modules or objects by ``tree``'s imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split('.')[0] for a in node.names if a.name.startswith('basicsr'))
        elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('basicsr'):
            names.update(a.asname or a.name for a in node.names)
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


@pytest.mark.parametrize('module', sorted(m for m in MODULES if not m.startswith('kd_plugin.compat')))
def test_nothing_outside_compat_rebinds_basicsr(module):
    tree = MODULES[module]
    basicsr = _basicsr_names(tree)
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute):
                assert _root(target) not in basicsr, f'{module} rebinds {ast.unparse(target)}'
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ('setattr', 'delattr') and node.args:
            assert _root(node.args[0]) not in basicsr | {'sys'}, f'{module}: {ast.unparse(node)}'
        if isinstance(node, ast.Attribute) and ast.unparse(node) == 'sys.modules':
            pytest.fail(f'{module} reaches into sys.modules')


def test_compat_holds_fixes_that_cite_upstream_and_the_hooks():
    """Every compat module but the recorder cites the BasicSR ``file:line`` it works around or hooks into."""
    for module, tree in MODULES.items():
        if module.startswith('kd_plugin.compat.') and module != 'kd_plugin.compat.record':
            docs = ' '.join(ast.get_docstring(n) or '' for n in ast.walk(tree)
                            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)))
            assert re.search(r'basicsr/[\w/]+\.py:\d+', docs), f'{module} cites no upstream file:line'
