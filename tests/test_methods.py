"""The method registry: a new method is one module plus one registration."""
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from crest import config as config_lib
from crest import generations
from crest import methods
from crest.config import Config
from crest.errors import ConfigError
from data import registry as data_registry
from data.base import DataArgs

# A supervised-only "method" that declares everything about itself.
_MODULE = '''
import tensorflow as tf
from crest import losses, method_api
from crest.errors import ConfigError

LABEL = 'SupOnly'
CREST_LABEL = 'SupOnly + {crest}'
DEFAULTS = {'threshold': 0.5}
GATHERS_ACROSS_REPLICAS = False
CALLS = []


def check(cfg):
  if cfg.weight_unsup != 0:
    raise ConfigError('--method=suponly trains on labels only: set '
                      '--weight_unsup=0.')


def loss(model, batch, stats, params):
  CALLS.append(1)
  xl, yl = batch['x_l'], batch['y_l']
  xw = batch['x_w'][:, 0]
  logits = tf.cast(model(tf.concat([xl, xw], 0), training=True), tf.float32)
  logits_l, logits_w = logits[:tf.shape(xl)[0]], logits[tf.shape(xl)[0]:]
  loss_xe = method_api.labeled_loss(losses.sparse_xe(yl, logits_l), yl,
                                    stats, params)
  mask = tf.zeros_like(logits_w[:, 0])
  return method_api.finish(
      params, loss_xe=loss_xe, loss_xeu=tf.zeros([]),
      labeled_scores=logits_l, labels=yl, unlabeled_scores=logits_w,
      unlabeled_labels=batch['y_u'], mask=mask,
      weak_probs=tf.nn.softmax(tf.stop_gradient(logits_w)))
'''


@pytest.fixture
def suponly(tmp_path, monkeypatch):
  (tmp_path / 'suponly_method.py').write_text(textwrap.dedent(_MODULE))
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setitem(methods._MODULES, 'suponly', 'suponly_method')  # pylint: disable=protected-access
  yield
  sys.modules.pop('suponly_method', None)


def test_registered_method_trains_end_to_end(suponly, tmp_path):
  assert 'suponly' in methods.names()
  method = methods.get('suponly')
  assert (method.label, method.defaults) == ('SupOnly', {'threshold': 0.5})
  cfg = Config(method='suponly', dataset='synthetic_tiny', net_arch='small',
               weight_unsup=0.0, num_epoch=2, num_batch=3, num_generation=2,
               batch_size=8, unlab_ratio=1, percent_labeled=0.3,
               model_dir=str(tmp_path / 'runs'), progress=False, seed=1,
               eval_batch_size=128)
  config_lib.validate(cfg, num_replicas=1)
  with pytest.raises(ConfigError, match='--weight_unsup=0'):
    config_lib.validate(cfg.replace(weight_unsup=1.0))
  data = data_registry.load(DataArgs(
      dataset=cfg.dataset, class_im_ratio=cfg.class_im_ratio,
      percent_labeled=cfg.percent_labeled, fold=cfg.fold))
  strategy = tf.distribute.OneDeviceStrategy('/cpu:0')
  records = generations.run(cfg, strategy, data)
  assert [r['generation'] for r in records] == [0, 1]
  assert sys.modules['suponly_method'].CALLS  # Its loss was traced.
  for r in records:
    assert 0.0 <= r['test_accuracy'] <= 1.0
  assert records[1]['num_pseudo_labeled'] == sum(records[0]['picked_per_class'])
  label = methods.table_label(dict(method='suponly', num_generation=2,
                                   do_distalign=True, how_dalign='adaptive'))
  assert label[1] == 'SupOnly + CReST+'


def test_method_defaults_apply_only_to_unset_flags(suponly):
  values = dict(method='suponly', threshold=0.95, temperature=0.0)
  out = config_lib.apply_method_defaults(values, frozenset())
  assert out['threshold'] == 0.5
  out = config_lib.apply_method_defaults(values, frozenset({'threshold'}))
  assert out['threshold'] == 0.95


def test_labels_without_importing_the_method_module(monkeypatch):
  monkeypatch.delitem(sys.modules, 'mixmatch', raising=False)
  _, label = methods.table_label(dict(method='mixmatch', num_generation=3))
  assert label == 'MixMatch + CReST' and 'mixmatch' not in sys.modules
  assert methods.table_label(dict(method='fixmatch', num_generation=3,
                                  do_distalign=True,
                                  how_dalign='adaptive'))[1] == 'CReST+'
  assert methods.table_label(dict(method='vat'))[1] == 'vat'


def test_unknown_and_broken_methods_are_config_errors(monkeypatch):
  with pytest.raises(ConfigError, match='fixmatch, mixmatch'):
    methods.get('vat')
  monkeypatch.setitem(methods._MODULES, 'broken', 'numpy')  # pylint: disable=protected-access
  with pytest.raises(ConfigError, match='defines no'):
    methods.get('broken')
