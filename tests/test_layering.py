"""The package's architecture as tests: imports run one way through the subpackages (no upward
import, no circle, lazy imports included), the flat folder holds nothing but the package docstring,
every subpackage says what lives there, and importing the project changes no process state."""

import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lowest first: a package may import its own modules and those of packages on lower levels only.
LEVELS = {
    'tf_benchmarks.core': 0,
    'tf_benchmarks.network': 1,
    'tf_benchmarks.models': 2, 'tf_benchmarks.files': 2,
    'tf_benchmarks.data': 3, 'tf_benchmarks.pruning': 3, 'tf_benchmarks.runs': 3,
    'tf_benchmarks.engine': 4,
    'tf_benchmarks.deploy': 5,
    'tf_benchmarks.commands': 6,
    'aofp': 7, 'csgd': 7, 'tf_benchmarks.api': 7,
}
PACKAGES = ('tf_benchmarks', 'aofp', 'csgd')


def _modules():
    """{dotted module name: path} of every module of the installed packages."""
    found = {}
    for top in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
                    found[dotted[:-len('.__init__')] if dotted.endswith('__init__') else dotted] \
                        = path
    return found


def _package(module):
    """The LEVELS entry a module belongs to."""
    parts = module.split('.')
    return '.'.join(parts[:2]) if parts[0] == 'tf_benchmarks' else parts[0]


def _imports(path, modules):
    """The project modules a file imports (at any depth: lazy imports count)."""
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ['%s.%s' % (node.module, a.name) for a in node.names]
        for name in names:
            if name in modules and name.split('.')[0] in PACKAGES:
                out.add(name)
    return out


def import_graph():
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def upward_imports(graph):
    """(importer, imported) pairs against LEVELS; a package's __init__ is its own level."""
    bad = []
    for module, imported in graph.items():
        if module in PACKAGES:
            continue
        here = _package(module)
        for other in imported:
            there = _package(other)
            if other in PACKAGES or there == here:
                continue
            if there not in LEVELS or LEVELS[there] >= LEVELS[here]:
                bad.append((module, other))
    return sorted(bad)


def cycles(graph):
    """One import circle per strongly connected group of modules (Tarjan), as lists."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_imports_run_one_way_without_circles():
    graph = import_graph()
    assert len(graph) > 50
    assert upward_imports(graph) == []
    assert cycles(graph) == []


def test_the_checks_catch_an_upward_import_and_a_circle():
    graph = import_graph()
    graph['tf_benchmarks.network.convnet_builder'] |= {
        'tf_benchmarks.engine.trainer'}
    assert ('tf_benchmarks.network.convnet_builder',
            'tf_benchmarks.engine.trainer') in upward_imports(graph)
    assert any('tf_benchmarks.network.convnet_builder' in c for c in cycles(graph))
    graph = import_graph()
    graph['aofp.oracle.command'] = graph['aofp.oracle.command'] | {'csgd.clustering'}
    assert ('aofp.oracle.command', 'csgd.clustering') in upward_imports(graph)


def test_the_flat_folder_is_empty_and_every_package_says_what_lives_there():
    flat = sorted(n for n in os.listdir(os.path.join(REPO, 'tf_benchmarks')) if n.endswith('.py'))
    assert flat == ['__init__.py']
    for package in list(LEVELS) + ['tf_benchmarks', 'aofp.oracle']:
        init = os.path.join(REPO, *package.split('.'), '__init__.py')
        doc = ast.get_docstring(ast.parse(open(init).read()))
        assert doc and len(doc) > 60, package
    assert set(LEVELS) == {_package(m) for m in _modules() if m not in PACKAGES}


@pytest.mark.skipif(sys.platform != 'linux', reason='one fresh process on Linux is enough')
def test_importing_the_project_changes_no_process_state():
    """Every module but the two driver scripts (entry points: they switch graph mode on and define
    their flags) imported in a fresh process: TensorFlow still runs eagerly, and
    TF_CPP_MIN_LOG_LEVEL is not set."""
    modules = sorted(m for m in _modules() if not m.endswith('_standalone'))
    code = ('import importlib, os, sys\nsys.path.insert(0, %r)\nos.environ.pop("TF_CPP_MIN_LOG_LEVEL",'
            ' None)\nfor m in %r:\n    importlib.import_module(m)\nimport tensorflow as tf\n'
            'print(tf.executing_eagerly(), os.environ.get("TF_CPP_MIN_LOG_LEVEL"))\n'
            % (REPO, modules))
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items()
                                              if k != 'TF_CPP_MIN_LOG_LEVEL'})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ['True', 'None']
