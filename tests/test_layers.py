"""The layering rule: data/, augment/ and networks/ import nothing from
crest/ or a method; methods import crest's machinery, not its registry or
trainer; nothing imports the entry point."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOW = ('data', 'augment', 'networks')
METHOD_FILES = ('fixmatch.py', 'mixmatch.py')


def _imports(path: pathlib.Path):
  """Top-level module names imported anywhere in the file (functions too)."""
  tree = ast.parse(path.read_text(encoding='utf-8'))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      yield node.module


def _files(*dirs):
  for d in dirs:
    yield from sorted((ROOT / d).glob('*.py'))


@pytest.mark.parametrize('package', LOW)
def test_low_layers_import_nothing_above_them(package):
  bad = {}
  for path in _files(package):
    above = [m for m in _imports(path)
             if m.split('.')[0] in ('crest', 'fixmatch', 'mixmatch',
                                    'train_and_eval_loop', 'scripts')]
    if above:
      bad[path.name] = above
  assert not bad, f'{package}/ imports from above it: {bad}'


def test_methods_use_the_machinery_not_the_registry_or_trainer():
  for name in METHOD_FILES:
    mods = set(_imports(ROOT / name))
    assert 'crest.method_api' in mods or any(
        m == 'crest' for m in mods), name
    for forbidden in ('crest.methods', 'crest.trainer', 'crest.generations',
                      'crest.config'):
      assert forbidden not in mods, (name, forbidden)


def test_nothing_imports_the_entry_point():
  users = [p.relative_to(ROOT).as_posix()
           for p in _files('crest', 'data', 'augment', 'networks', 'scripts',
                           'scripts/parity', '.')
           if 'train_and_eval_loop' in set(_imports(p))]
  assert not users, users


def test_no_file_of_the_package_is_much_over_300_lines():
  long = {p.relative_to(ROOT).as_posix(): n
          for p in _files('crest', 'data', 'augment', 'networks')
          if (n := len(p.read_text(encoding='utf-8').splitlines())) > 400}
  assert not long, long
