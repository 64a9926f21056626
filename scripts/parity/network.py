"""network_wrn.npz and network_resnet.npz: the original's networks on fixed
weights (format: the fixture directory's README).

For every case and every implementation the registry offers for its
architecture (`networks.registry.impls`), the model is built, the
original's variables are assigned by their original names
(`networks.registry.original_variables`), and compared:
`logits_infer` (training=False) and `logits_train` (training=True) within
1e-4 absolute; the gradients of `sum(logits_train * probe)` and the moving
statistics after that one training forward within 1e-4 of each reference
array's largest magnitude.

Case names: `wrn28_{width}_{activation}` (32x32x3 images) or
`{arch}_w{width}_{activation}_s{size}`; the class count is read off
`predictions/bias`.
"""
from __future__ import annotations

import pathlib
import re
from typing import Dict, List, Tuple

import numpy as np

from scripts.parity import common

LOGIT_TOL = 1e-4
SCALED_TOL = 1e-4
WRN_CASE = re.compile(r'(?P<arch>wrn\d+)_(?P<width>\d+)_(?P<act>leaky_relu|relu)')
ARCH_CASE = re.compile(
    r'(?P<arch>[a-z]+\d+(?:v2)?)_w(?P<width>[0-9.]+)_(?P<act>leaky_relu|relu)'
    r'_s(?P<size>\d+)')
FIELDS = ('images', 'probe', 'logits_infer', 'logits_train')


def parse_case(case: str) -> Tuple[str, float, str, int]:
  """(architecture name as the fixture spells it, width, activation, side).

  Raises:
    ValueError: the name matches neither grammar.
  """
  match = WRN_CASE.fullmatch(case)
  if match:
    return match['arch'], float(match['width']), match['act'], 32
  match = ARCH_CASE.fullmatch(case)
  if match:
    return (match['arch'], float(match['width']), match['act'],
            int(match['size']))
  raise ValueError('case name does not match wrn28_{width}_{activation} or '
                   '{arch}_w{width}_{activation}_s{size}')


def _fields(data, case: str, prefix: str) -> Dict[str, np.ndarray]:
  start = f'{case}__{prefix}__'
  return {k[len(start):]: data[k] for k in data.files if k.startswith(start)}


def run_case(arch: str, impl: str, width: float, activation: str,
             weights: Dict[str, np.ndarray], images: np.ndarray,
             probe: np.ndarray) -> Dict[str, object]:
  """Our network's outputs on a case's inputs.

  Returns:
    dict with 'logits_infer', 'logits_train' [B, K], 'grad' and 'moving'
    (dicts by original variable name), 'unassigned' (our variables the
    file had no value for) and 'unused' (file variables we do not have).
  """
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from networks import registry  # pylint: disable=g-import-not-at-top
  num_classes = int(weights['predictions/bias'].shape[0])
  keras.utils.set_random_seed(0)
  model = registry.build(arch, num_classes=num_classes,
                         input_shape=tuple(images.shape[1:]), width=width,
                         activation=activation, impl=impl)
  named = registry.original_variables(arch, model)
  unused = sorted(set(weights) - set(named))
  unassigned = sorted(set(named) - set(weights))
  for name, variable in named.items():
    if name in weights:
      variable.assign(weights[name])
  x = tf.constant(images, tf.float32)
  infer = model(x, training=False).numpy()
  by_id = {id(v): n for n, v in named.items()}
  trainable = model.trainable_variables
  with tf.GradientTape() as tape:
    train = model(x, training=True)
    loss = tf.reduce_sum(tf.cast(train, tf.float32) * probe)
  grads = tape.gradient(loss, trainable)
  grad = {by_id[id(v)]: g.numpy() for v, g in zip(trainable, grads)
          if id(v) in by_id and g is not None}
  moving = {n: v.numpy() for n, v in named.items()
            if n.endswith(('moving_mean', 'moving_variance'))}
  return dict(logits_infer=infer, logits_train=train.numpy(), grad=grad,
              moving=moving, unassigned=unassigned, unused=unused)


def compare(ours: Dict[str, object], data, case: str) -> Tuple[float, List[str]]:
  """(worst error, problems) of `ours` against the case's reference."""
  problems: List[str] = []
  if ours['unused'] or ours['unassigned']:
    problems.append(f'variables not in the model: {ours["unused"][:5]}; '
                    f'model variables not in the file: '
                    f'{ours["unassigned"][:5]}')
  worst = 0.0
  for field in ('logits_infer', 'logits_train'):
    err = common.abs_error(ours[field], data[f'{case}__{field}'])
    worst = max(worst, err)
    if not err <= LOGIT_TOL:
      problems.append(f'{field} error {err:.3g} (tolerance {LOGIT_TOL:g})')
  for kind in ('grad', 'moving'):
    ref = _fields(data, case, kind)
    missing = sorted(set(ref) - set(ours[kind]))
    if missing:
      problems.append(f'no {kind} for {missing[:5]}')
    errors = {n: common.scaled_error(ours[kind][n], r) for n, r in ref.items()
              if n in ours[kind]}
    if errors:
      name = max(errors, key=errors.get)
      worst = max(worst, errors[name])
      if not errors[name] <= SCALED_TOL:
        problems.append(f'{kind} of {name}: scaled error '
                        f'{errors[name]:.3g} (tolerance {SCALED_TOL:g})')
  return worst, problems


def check(path: pathlib.Path) -> common.FileResult:
  """Checks a network-format file; one result per case and implementation."""
  from networks import registry  # pylint: disable=g-import-not-at-top
  result = common.FileResult(path.name)
  with np.load(path) as data:
    for case in common.cases(data.files):
      try:
        arch, width, activation, size = parse_case(case)
        impls = registry.impls(arch)
      except ValueError as e:
        result.add(case, float('nan'), False, str(e))
        continue
      missing = common.missing_fields(data.files, case, FIELDS)
      if missing:
        result.add(case, float('nan'), False, f'missing fields {missing}')
        continue
      images = data[f'{case}__images']
      if images.shape[1:3] != (size, size):
        result.add(case, float('nan'), False,
                   f'images {images.shape} do not match size {size}')
        continue
      weights = _fields(data, case, 'w')
      for impl in impls:
        ours = run_case(arch, impl, width, activation, weights, images,
                        data[f'{case}__probe'])
        err, problems = compare(ours, data, case)
        result.add(f'{case} [{impl}]', err, not problems, '; '.join(problems))
  return result
