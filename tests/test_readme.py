"""The README stays true: every flag documented, the test command is CI's."""
import os
import re

from crest import flags as crest_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
  with open(os.path.join(ROOT, *parts), encoding='utf-8') as f:
    return f.read()


def test_every_flag_is_documented():
  readme = _read('README.md')
  missing = [n for n in crest_flags.FLAG_NAMES if f'`{n}`' not in readme]
  assert not missing, f'flags missing from README.md: {missing}'


def test_ci_runs_the_readme_test_command():
  readme = _read('README.md')
  match = re.search(r'(python3? -m pytest[^`\n]*)', readme)
  assert match, 'README.md gives no pytest command'
  assert match.group(1).strip() in _read('.ci', 'run')
