"""Registry of SSL methods: name -> the module that declares it.

A method module declares what `crest.method_api` lists (LABEL,
CREST_LABEL, DEFAULTS, GATHERS_ACROSS_REPLICAS, check, loss, optional
STAGES); a new method is that module plus one line in `_MODULES` (or a
`register` call). Modules are imported when first asked for, so reading the
registry stays cheap.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from crest.errors import ConfigError

# name -> importable module that declares the method.
_MODULES: Dict[str, str] = {'fixmatch': 'fixmatch', 'mixmatch': 'mixmatch'}


@dataclasses.dataclass(frozen=True)
class Method:
  """Everything the trainer, the config and the tables know of a method."""
  name: str
  loss: Callable[..., Any]
  label: str
  crest_label: str
  defaults: Mapping[str, Any]
  gathers_across_replicas: bool
  check: Callable[[Any], None]
  # (first, second): the loss in two pieces around its exchange across
  # replicas (`crest.method_api.run_stages`), or None.
  stages: Optional[Tuple[Callable[..., Any], Callable[..., Any]]] = None


def register(name: str, module: str) -> None:
  """Adds (or replaces) method `name`, declared by importable `module`."""
  _MODULES[str(name)] = str(module)


def names() -> List[str]:
  """The registered method names, sorted."""
  return sorted(_MODULES)


def get(name: str) -> Method:
  """The method registered as `name`.

  Raises:
    ConfigError: unknown name, or a module that does not declare `loss`.
  """
  if name not in _MODULES:
    raise ConfigError(f'Unknown method {name!r}; choose one of: '
                      f'{", ".join(names())}.')
  module = importlib.import_module(_MODULES[name])
  if not callable(getattr(module, 'loss', None)):
    raise ConfigError(f'Method module {_MODULES[name]!r} defines no '
                      '`loss(model, batch, stats, params)`.')
  label = getattr(module, 'LABEL', name)
  return Method(
      name=name, loss=module.loss, label=label,
      crest_label=getattr(module, 'CREST_LABEL', label + ' + {crest}'),
      defaults=dict(getattr(module, 'DEFAULTS', {})),
      gathers_across_replicas=bool(
          getattr(module, 'GATHERS_ACROSS_REPLICAS', False)),
      check=getattr(module, 'check', lambda cfg: None),
      stages=getattr(module, 'STAGES', None))


def _labels(name: str) -> Tuple[str, str]:
  """(LABEL, CREST_LABEL) of a registered method without importing it.

  Result tables must not need TensorFlow (which every method module
  imports), so the two string constants are read off the module's source;
  an already imported module is asked directly.
  """
  module_name = _MODULES[name]
  module = sys.modules.get(module_name)
  if module is not None:
    label = getattr(module, 'LABEL', name)
    return label, getattr(module, 'CREST_LABEL', label + ' + {crest}')
  constants: Dict[str, str] = {}
  spec = importlib.util.find_spec(module_name)
  if spec is not None and spec.origin and spec.origin.endswith('.py'):
    with open(spec.origin, encoding='utf-8') as f:
      tree = ast.parse(f.read())
    for node in tree.body:
      if (isinstance(node, ast.Assign) and len(node.targets) == 1 and
          isinstance(node.targets[0], ast.Name) and
          isinstance(node.value, ast.Constant) and
          isinstance(node.value.value, str)):
        constants[node.targets[0].id] = node.value.value
  label = constants.get('LABEL', name)
  return label, constants.get('CREST_LABEL', label + ' + {crest}')


def crest_variant(cfg: Mapping[str, Any]) -> Tuple[int, str]:
  """(order, name) of the CReST variant of a config dict, e.g. (5,
  'CReST+'); names starting with '+' are one-generation additions ('+ DA');
  (0, '') is the method alone."""
  da, how = bool(cfg.get('do_distalign')), cfg.get('how_dalign')
  if int(cfg.get('num_generation', 1)) <= 1:
    if not da:
      return 0, ''
    return 1, '+ DA' + (f' ({how})' if how else '')
  if not da:
    return 2, 'CReST'
  if how is None:
    return 3, 'CReST + DA'
  if how == 'adaptive':
    return 5, 'CReST+'
  return 4, f'CReST+ ({how})'


def table_label(cfg: Mapping[str, Any]) -> Tuple[Tuple[str, int], str]:
  """(sort key, label) of a run's config dict in result tables: 'FixMatch',
  'CReST+', 'MixMatch + CReST', 'FixMatch + DA', ..."""
  name = cfg.get('method', 'fixmatch')
  order, variant = crest_variant(cfg)
  if name in _MODULES:
    label, crest_label = _labels(name)
  else:  # A run of a method not registered here.
    label, crest_label = name, name + ' + {crest}'
  if not variant:
    text = label
  elif variant.startswith('+'):
    text = f'{label} {variant}'
  else:
    text = crest_label.format(crest=variant)
  return (name, order), text
