"""FLOPs of a model's forward pass and of a training step, counted from the
Keras layers' shapes (no profiler).

Counted: every Conv2D (output H x W x the kernel's kh * kw * C_in / groups *
C_out multiply-adds), every Dense (the kernel's size per output position) and
every layer exposing a `kernels` list (the lean WRN `PreActBlock`: each
kernel's size at the block's output resolution, which is where all its
convolutions produce their outputs). One multiply-add = 2 FLOPs. Batch norm,
activations, pooling and the loss are not counted (a few % of a WRN's).
A training step counts 3 forward passes (forward + backward ~ 3x forward)
for the images whose logits get gradients, and 1 for label-guessing
passes without gradients (MixMatch's weak views). The lean blocks' recomputed
forward in the backward pass is not counted: the figure is the model's work,
the same for both builds.
"""
from __future__ import annotations

import math

import keras


def _all_layers(layer):
  yield layer
  for sub in getattr(layer, 'layers', ()):
    yield from _all_layers(sub)


def _spatial(shape) -> int:
  """Positions per image of an output shape (None, ..., C): the product of
  the dimensions between the batch and the channels."""
  dims = [int(d) for d in tuple(shape)[1:-1]]
  return math.prod(dims) if dims else 1


def forward_macs(model: keras.Model) -> int:
  """Multiply-adds of one image's forward pass through `model` (built).

  Raises:
    ValueError: a layer with a convolution kernel this count does not know
      (it would be undercounted).
  """
  total = 0
  for layer in _all_layers(model):
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      total += _spatial(layer.output.shape) * math.prod(layer.kernel.shape)
    elif hasattr(layer, 'kernels'):
      total += _spatial(layer.output.shape) * sum(
          math.prod(k.shape) for k in layer.kernels)
    elif not getattr(layer, 'layers', None) and any(
        'kernel' in v.path.split('/')[-1] for v in layer.weights):
      raise ValueError(f'forward_macs: layer {layer.name!r} '
                       f'({type(layer).__name__}) has a kernel this count '
                       'does not know; add its rule to scripts/bench_flops.py.')
  return int(total)


def train_step_flops(method: str, forward_flops: float, batch_size: int,
                     unlabeled_batch_size: int, num_weakaug: int,
                     num_strongaug: int) -> float:
  """FLOPs of one training step of `method` (see the module docstring).

  Args:
    method: 'fixmatch' or 'mixmatch'.
    forward_flops: FLOPs of one image's forward pass (2 x `forward_macs`).
    batch_size, unlabeled_batch_size: the global labeled / unlabeled batch.
    num_weakaug, num_strongaug: views per unlabeled image.
  """
  b, u = batch_size, unlabeled_batch_size
  if method == 'mixmatch':
    # Guessing: the weak views, no gradient; then the mixed batch.
    guess = u * num_weakaug
    trained = b + u * num_weakaug
  elif method == 'fixmatch':
    # One forward over labeled, the weak view once per strong view, and the
    # strong views, all in the graph that is differentiated.
    guess = 0
    trained = b + 2 * u * num_strongaug
  else:
    raise ValueError(f'train_step_flops: unknown method {method!r}; '
                     "choose 'fixmatch' or 'mixmatch'.")
  return forward_flops * (guess + 3 * trained)


def fraction_of_peak(flops_per_s: float, peak_gflops: float) -> float:
  """The share of the measured matmul peak (GFLOP/s) a rate reaches."""
  return flops_per_s / (peak_gflops * 1e9) if peak_gflops else float('nan')
