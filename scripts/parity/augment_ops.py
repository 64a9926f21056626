"""augment_ops.npz: `augment.parity.check_file`, byte-exact; one case per
image per op key."""
from __future__ import annotations

import math
import pathlib

from scripts.parity import common


def check(path: pathlib.Path) -> common.FileResult:
  """Checks an augment_ops-format file."""
  result = common.FileResult(path.name)
  try:
    from augment import parity  # pylint: disable=g-import-not-at-top
    check_file = parity.check_file
  except (ImportError, AttributeError) as e:
    result.failures.append(f'augment.parity not available ({e})')
    return result
  for key, passed, total, worst in check_file(path):
    result.total += total
    result.passed += passed
    result.worst_error = (float(worst) if math.isnan(result.worst_error)
                          else max(result.worst_error, float(worst)))
    if passed != total:
      result.failures.append(f'{key}: {total - passed}/{total} images differ '
                             f'(max abs diff {worst})')
  return result
