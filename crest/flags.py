"""Command-line flags: defined here and only here, turned into a `Config`.

Names and defaults are the original's (see the README's flag tables). Two
deliberate differences: `--seed` always seeds (0 is a seed), and `--bn_sync`
really synchronises batch norm. The original's unused `root`, `source_data`
and `target_data` are dropped.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from absl import flags

from crest import config as config_lib
from crest.errors import ConfigError

_D = config_lib.Config()

# (name, kind, default, help). Kinds: str, int, float, bool, enum, optfloat,
# optint, optstr.
_FLAGS = [
    # --- What to train.
    ('method', 'str', _D.method,
     'SSL method: fixmatch or mixmatch.'),
    ('dataset', 'str', _D.dataset,
     'Dataset name (see the README; e.g. cifar10lt, cifar100lt, cifar10, '
     'cifar100, cifar10ltdarp, fashionmnistlt, npz, npzlt, synthetic).'),
    ('fold', 'int', _D.fold, 'Seed of the labeled split.'),
    ('class_im_ratio', 'float', _D.class_im_ratio,
     'Imbalance ratio N_min / N_max (0.01 means gamma = 100). For the DARP '
     'datasets it is gamma itself (e.g. 150).'),
    ('percent_labeled', 'optfloat', None,
     'Fraction of each class that is labeled (long-tailed sets), in (0, 1].'),
    ('num_labeled', 'int', _D.num_labeled,
     'Labeled examples per class (balanced sets).'),
    ('is_balanced', 'bool', _D.is_balanced,
     'Balanced labeled split (balanced sets).'),
    ('ml_data', 'str', '',
     'Data root; defaults to the ML_DATA environment variable, read when the '
     'run starts.'),
    ('data_file', 'str', '', 'Your own .npz file (datasets npz and npzlt).'),
    ('darp_n1', 'optint', None,
     'DARP protocol: labeled examples of the head class (default 1500; '
     'CIFAR-100: 150).'),
    ('darp_m1', 'optint', None,
     'DARP protocol: unlabeled examples of the head class (default 3000; '
     'CIFAR-100: 300).'),
    ('darp_gamma_u', 'optfloat', None,
     'DARP protocol: imbalance of the unlabeled set (unset: the labeled '
     'gamma, "consistent"; 1: uniform; negative: reversed, the unlabeled '
     'head being the labeled tail).'),
    ('darp_unlabeled_shape', 'str', _D.darp_unlabeled_shape,
     'DARP protocol: shape of the unlabeled class profile: longtail, middle '
     '(largest counts in the middle classes) or head_tail (largest at both '
     'ends).'),
    ('stl10_add_unused', 'bool', _D.stl10_add_unused,
     'STL-10-LT: add the training images the long-tailed labeled set leaves '
     'out to the unlabeled set (default: the 100,000 unlabeled images '
     'only).'),
    ('imagenet127_test', 'str', _D.imagenet127_test,
     'ImageNet-127 test set: imbalanced (the whole ILSVRC validation set) '
     'or balanced (the first min-class-count images of each class).'),
    ('input_shape', 'str', '32,32,3',
     'Image shape H,W,C; must match the data (Fashion-MNIST: 28,28,1). Left '
     'at its default, it follows the dataset. STL-10-LT: 96,96,3 (its '
     'own), 64,64,3 or 32,32,3 (resized).'),
    # --- Augmentation.
    ('augment', 'str', _D.augment, 'Augmentation of the labeled view.'),
    ('weakaug', 'str', _D.weakaug, 'Weak augmentation of unlabeled views.'),
    ('strongaug', 'str', _D.strongaug,
     'Strong augmentation of unlabeled views.'),
    ('num_augment', 'int', _D.num_augment,
     'Labeled views per example (as in the original, only the first is used '
     'by the losses).'),
    ('num_weakaug', 'int', _D.num_weakaug,
     'Weak views per unlabeled example (MixMatch default: 2).'),
    ('num_strongaug', 'int', _D.num_strongaug,
     'Strong views per unlabeled example (MixMatch default: 0).'),
    # --- Network.
    ('net_arch', 'str', _D.net_arch,
     'Network: WRN28, WRN37, ResNet18/50/101/152 (V1), ResNet18V2 ... '
     'ResNet152V2, or small (a CPU-sized CNN); case-insensitive.'),
    ('net_width', 'float', _D.net_width,
     'Width: WideResNet k (an integer), or the ResNets\' filter multiplier '
     '(e.g. 0.5).'),
    ('net_impl', 'str', _D.net_impl,
     'lean (memory-lean custom-gradient blocks, where the network has them; '
     'else plain layers) or keras (plain Keras layers: the standard fused '
     'kernels). Same numbers either way.'),
    ('activation', 'str', _D.activation,
     'Activation: leaky_relu (slope 0.1) or relu.'),
    ('bn_sync', 'bool', _D.bn_sync,
     'Synchronise batch-norm statistics across replicas.'),
    ('head_arch', 'str', _D.head_arch, 'Classifier head: linear or mlp.'),
    ('head_mlp_dims', 'str', '',
     'Comma-separated hidden sizes of the mlp head.'),
    # --- Optimisation.
    ('optim_type', 'str', _D.optim_type, 'Optimizer: sgd (Nesterov) or adam.'),
    ('sched_type', 'str', _D.sched_type,
     'Learning-rate schedule: const, linear, step, cos or halfcos.'),
    ('sched_freq', 'str', _D.sched_freq,
     'Schedule update frequency: step or epoch.'),
    ('sched_step_size', 'int', _D.sched_step_size, 'step schedule: period.'),
    ('sched_gamma', 'float', _D.sched_gamma, 'step schedule: decay factor.'),
    ('sched_min_rate', 'float', _D.sched_min_rate,
     'linear / cos schedules: final rate as a fraction of the base rate.'),
    ('sched_level', 'int', _D.sched_level,
     'halfcos schedule: lr * cos(pi * s / S * level / 16).'),
    ('learning_rate', 'float', _D.learning_rate, 'Base learning rate.'),
    ('weight_decay', 'float', _D.weight_decay,
     'L2 coefficient of 0.5 * sum of squared weights (batch norm excluded).'),
    ('ema_decay', 'float', _D.ema_decay, 'Decay of the weights\' EMA.'),
    ('momentum', 'float', _D.momentum, 'SGD momentum.'),
    ('nesterov', 'bool', _D.nesterov, 'Nesterov momentum.'),
    ('clip_value', 'float', _D.clip_value,
     'Element-wise gradient clipping when > 0.'),
    ('num_epoch', 'int', _D.num_epoch, 'Epochs per generation.'),
    ('num_batch', 'int', _D.num_batch, 'Steps per epoch.'),
    ('batch_size', 'int', _D.batch_size,
     'Global labeled batch size (split among replicas).'),
    ('unlab_ratio', 'int', _D.unlab_ratio,
     'Unlabeled batch = unlab_ratio x batch_size (the paper uses 7).'),
    # --- Semi-supervised loss.
    ('unsup_loss_type', 'str', _D.unsup_loss_type,
     'Unsupervised loss: xe or mse (MixMatch default: mse).'),
    ('unsup_loss_divisor', 'str', _D.unsup_loss_divisor,
     'Divide the unsupervised loss by all unlabeled examples (full) or by '
     'those above the threshold (quality).'),
    ('weight_unsup', 'float', _D.weight_unsup,
     'Weight of the unsupervised loss (MixMatch default: 75).'),
    ('threshold', 'float', _D.threshold,
     'Confidence threshold of the pseudo-label mask (MixMatch default: 0).'),
    ('temperature', 'float', _D.temperature,
     'Sharpening temperature; 0 gives one-hot pseudo-labels (MixMatch '
     'default: 0.5).'),
    ('mixup_beta', 'float', _D.mixup_beta,
     'MixMatch: MixUp lambda ~ Beta(beta, beta); <= 0 disables MixUp.'),
    ('reweight_labeled', 'bool', _D.reweight_labeled,
     'Weight the labeled loss by inverse class frequency.'),
    # --- CReST.
    ('num_generation', 'int', _D.num_generation,
     'CReST generations (1 = the base method alone).'),
    ('do_distalign', 'bool', _D.do_distalign, 'Distribution alignment.'),
    ('how_dalign', 'optstr', None,
     'constant or adaptive (CReST+); unset aligns to the running labeled '
     'distribution.'),
    ('dalign_t', 'float', _D.dalign_t,
     'Alignment temperature (its minimum for adaptive).'),
    ('alpha', 'float', _D.alpha,
     'CReST selection: the rarest class keeps (N_min/N_max) ** (1/alpha) of '
     'its predictions.'),
    ('update_mode', 'str', _D.update_mode,
     'distribution (CReST rebalancing) or all (every pseudo-label).'),
    # --- Run.
    ('model_dir', 'str', '', 'Where the run directory is created.'),
    ('ckpt_prefix', 'str', '', 'Accepted for compatibility; unused.'),
    ('file_path', 'str', '', 'Accepted for compatibility; unused.'),
    ('file_suffix', 'str', '', 'Appended to the run directory name.'),
    ('seed', 'int', _D.seed,
     'Random seed; always used (0 is a seed, unlike the original).'),
    ('force_init', 'bool', _D.force_init,
     'Delete the run directory and start over.'),
    ('do_rollback', 'bool', _D.do_rollback,
     'On a non-finite loss, restore the last checkpoint and continue.'),
    ('num_workers', 'int', _D.num_workers,
     'Input-pipeline parallelism hint (tf.data uses AUTOTUNE).'),
    ('cpu_replicas', 'int', _D.cpu_replicas,
     'Testing: split the CPU into N logical devices and mirror across them.'),
    ('deterministic', 'bool', _D.deterministic,
     'Turn on TF op determinism (runs repeat bit for bit).'),
    ('jit_compile', 'bool', _D.jit_compile,
     'Compile the train and eval steps with XLA.'),
    ('onednn', 'bool', _D.onednn,
     'Use oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS; about 2x faster '
     'convolutions on x86 CPUs; no effect on GPUs).'),
    ('mixed_precision', 'str', _D.mixed_precision,
     'float32, bfloat16 or float16 compute.'),
    ('steps_per_loop', 'int', _D.steps_per_loop,
     'Training steps per tf.function call.'),
    ('eval_batch_size', 'int', _D.eval_batch_size,
     'Batch size of evaluation and pseudo-labelling.'),
    ('keep_checkpoints', 'int', _D.keep_checkpoints,
     'Checkpoints kept per generation.'),
    ('progress', 'bool', _D.progress, 'Show a progress bar per epoch.'),
]

FLAG_NAMES = tuple(f[0] for f in _FLAGS)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS,
                 help_module: Optional[str] = None) -> None:
  """Defines every flag on `flag_values` (call once, from the entry point).

  Args:
    flag_values: where to define them.
    help_module: also list them under this module (the entry point's
      `sys.argv[0]`), so that `--help` shows them, not only `--helpfull`.
  """
  for name, kind, default, help_ in _FLAGS:
    if name in flag_values:
      continue
    if kind in ('str', 'optstr'):
      flags.DEFINE_string(name, default, help_, flag_values=flag_values)
    elif kind in ('int', 'optint'):
      flags.DEFINE_integer(name, default, help_, flag_values=flag_values)
    elif kind in ('float', 'optfloat'):
      flags.DEFINE_float(name, default, help_, flag_values=flag_values)
    elif kind == 'bool':
      flags.DEFINE_boolean(name, default, help_, flag_values=flag_values)
    else:
      raise AssertionError(kind)
    if help_module:
      flag_values.register_flag_by_module(help_module, flag_values[name])


def _parse_ints(name: str, text: str, allow_empty: bool) -> tuple:
  text = text.strip()
  if not text:
    if allow_empty:
      return ()
    raise ConfigError(f'--{name} is empty; give comma-separated integers.')
  try:
    return tuple(int(t) for t in text.split(','))
  except ValueError:
    raise ConfigError(f'--{name}={text!r} must be comma-separated integers, '
                      'e.g. 32,32,3.') from None


def values_from_flags(flag_values: flags.FlagValues = flags.FLAGS
                      ) -> tuple[Dict[str, Any], frozenset]:
  """Raw values of every flag, and the names the user set explicitly."""
  values = {name: flag_values[name].value for name in FLAG_NAMES}
  present = frozenset(n for n in FLAG_NAMES if flag_values[n].present)
  return values, present


def config_from_values(values: Dict[str, Any],
                       present: frozenset) -> config_lib.Config:
  """Turns flag values into a (not yet validated) `Config`.

  Args:
    values: flag name -> value, as parsed by absl.
    present: names the user set explicitly (method defaults apply to others).
  """
  if 'class_im_ratio' in present:
    from data import registry  # pylint: disable=g-import-not-at-top
    if not registry.uses_class_im_ratio(values['dataset']):
      raise ConfigError(
          f'--class_im_ratio does nothing for --dataset={values["dataset"]}: '
          'its data are used as is (their own imbalance). Drop the flag, or '
          'use a long-tailed dataset (e.g. --dataset=npzlt to make own data '
          'long-tailed by --class_im_ratio).')
  v = config_lib.apply_method_defaults(values, present)
  how = v['how_dalign']
  if how in ('', 'None', 'none'):
    how = None
  v['how_dalign'] = how
  if 'input_shape' not in present:  # A dataset offered at several sizes.
    from data import registry  # pylint: disable=g-import-not-at-top
    shape = registry.default_image_shape(v['dataset'])
    if shape:
      v['input_shape'] = ','.join(map(str, shape))
  v['input_shape'] = _parse_ints('input_shape', v['input_shape'], False)
  v['head_mlp_dims'] = _parse_ints('head_mlp_dims', v['head_mlp_dims'], True)
  v['ml_data'] = config_lib.resolve_ml_data(v['ml_data'])
  return config_lib.Config(**v)
