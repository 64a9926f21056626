"""scripts/benchmark.py's parts: machine info from /proc/cpuinfo, the
like-for-like pairs, the FLOP count, and the driver on fake measurements
(no benchmark is run)."""
import json
import subprocess
import sys

import keras
import pytest

from conftest import ROOT
from networks import registry
from scripts import bench_flops
from scripts import bench_pairs
from scripts import benchmark
from scripts import machine_info

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16 ht

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16 ht
"""


def test_cpuinfo_flags_present_and_absent():
  info = machine_info.parse_cpuinfo(CPUINFO)
  assert info['cpu_model'] == 'AMD EPYC 9B14'
  assert info['logical_cpus'] == 2
  assert info['flags'] == {'AVX2': True, 'AVX-512F': True, 'AVX512_BF16': True,
                           'AMX-BF16': False, 'AMX-TILE': False}
  text = machine_info.format_machine(dict(info, usable_cpus=2))
  assert 'CPU AMD EPYC 9B14; 2 usable cores' in text
  assert 'AVX512_BF16 yes, AMX-BF16 no, AMX-TILE no' in text


def test_cpuinfo_amx_only_and_empty():
  intel = ('processor : 0\nmodel name : Intel Xeon\n'
           'flags : avx2 amx_bf16 amx_tile avx512fp16\n')
  flags = machine_info.parse_cpuinfo(intel)['flags']
  assert flags == {'AVX2': True, 'AVX-512F': False, 'AVX512_BF16': False,
                   'AMX-BF16': True, 'AMX-TILE': True}
  empty = machine_info.parse_cpuinfo('')
  assert empty['cpu_model'] == 'unknown' and empty['logical_cpus'] == 0
  assert not any(empty['flags'].values())


@pytest.mark.parametrize('cuda,gpus,smi,out,expected', [
    (False, 0, '/usr/bin/nvidia-smi', 'GPU 0: A100', 'not built with CUDA'),
    (True, 0, None, '', 'nvidia-smi is not on PATH'),
    (True, 0, '/usr/bin/nvidia-smi', 'No devices were found',
     'nvidia-smi lists no device (No devices were found)'),
    (True, 0, '/usr/bin/nvidia-smi', 'GPU 0: NVIDIA A100 (UUID: x)',
     'TensorFlow sees none'),
    (True, 1, None, '', ''),
])
def test_gpu_reason(cuda, gpus, smi, out, expected):
  reason = machine_info.gpu_reason(cuda, gpus, smi, out)
  assert (expected in reason) if expected else reason == ''


def _fake(case, impl, precision, repeat, ips, rss=1.0, variant='base'):
  return dict(case=case, impl=impl, precision=precision, repeat=repeat,
              images_per_sec=ips, peak_rss_gb=rss, variant=variant,
              replicas=1)


def test_plan_alternates_builds_in_each_round():
  runs = bench_pairs.plan(['fixmatch', 'pipeline'], ['float32', 'bfloat16'],
                          ('lean', 'keras'), 2, [('base', {})])
  got = [(r['repeat'], r['case'], r['impl'], r['precision']) for r in runs]
  one_round = [('fixmatch', 'lean', 'float32'), ('fixmatch', 'keras',
                                                 'float32'),
               ('fixmatch', 'lean', 'bfloat16'),
               ('fixmatch', 'keras', 'bfloat16'),
               ('pipeline', '', 'float32')]
  assert got == [(r,) + x for r in range(2) for x in one_round]
  # bfloat16 alone still runs its float32 plain-Keras reference first.
  assert bench_pairs.build_order(['bfloat16'], ('lean', 'keras')) == [
      ('keras', 'float32'), ('lean', 'bfloat16'), ('keras', 'bfloat16')]


def test_pairs_ratio_per_round_and_median():
  results = []
  lean = [110.0, 90.0, 160.0]  # Median 1.1, mean 1.2.
  keras_ = [100.0, 100.0, 100.0]
  lean_bf16 = [200.0, 150.0, 400.0]
  keras_bf16 = [120.0, 130.0, 110.0]
  for r in range(3):
    results += [_fake('fixmatch', 'lean', 'float32', r, lean[r], 2.5),
                _fake('fixmatch', 'keras', 'float32', r, keras_[r], 6.5),
                _fake('fixmatch', 'lean', 'bfloat16', r, lean_bf16[r], 2.2),
                _fake('fixmatch', 'keras', 'bfloat16', r, keras_bf16[r])]
  # A lost run: round 2's pairs using it disappear, the others stay.
  results = [x for x in results if not (x['repeat'] == 2 and
                                        x['precision'] == 'bfloat16' and
                                        x['impl'] == 'keras')]
  pairs = bench_pairs.pair_results(results, ['float32', 'bfloat16'],
                                   ('lean', 'keras'))
  summary = {(s['measured'], s['reference']): s
             for s in bench_pairs.summarize_pairs(pairs)}
  f32 = summary[('lean float32', 'keras float32')]
  assert f32['ratios'] == pytest.approx([1.1, 0.9, 1.6])
  assert f32['median_ratio'] == pytest.approx(1.1)
  assert f32['measured_peak_rss_gb'] == 2.5
  assert f32['reference_peak_rss_gb'] == 6.5
  bf16 = summary[('lean bfloat16', 'keras float32')]
  assert bf16['ratios'] == pytest.approx([2.0, 1.5, 4.0])
  assert bf16['median_ratio'] == pytest.approx(2.0)
  plain_bf16 = summary[('keras bfloat16', 'keras float32')]
  assert plain_bf16['ratios'] == pytest.approx([1.2, 1.3])
  assert plain_bf16['median_ratio'] == pytest.approx(1.25)
  table = bench_pairs.pairs_table(list(summary.values()))
  assert '| fixmatch | base | lean float32 / keras float32 | 3 | 1.100, 0.900, ' \
      '1.600 | **1.100** | 110.0 | 100.0 | 2.50 / 6.50 |' in table


def test_flops_of_a_tiny_model_equal_the_hand_count():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, padding='same', use_bias=False)(inputs)
  x = keras.layers.Conv2D(6, 3, strides=2, padding='same')(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  model = keras.Model(inputs, keras.layers.Dense(5)(x))
  # 8x8 outputs x 3x3x3 x 4, 4x4 outputs x 3x3x4 x 6, 6 x 5.
  assert bench_flops.forward_macs(model) == 64 * 27 * 4 + 16 * 36 * 6 + 30
  fwd = 2.0 * 1000
  assert bench_flops.train_step_flops('fixmatch', fwd, 64, 448, 1, 1) == \
      fwd * 3 * (64 + 448 + 448)
  assert bench_flops.train_step_flops('mixmatch', fwd, 64, 448, 2, 0) == \
      fwd * (896 + 3 * (64 + 896))


def test_flops_of_the_wrn_builds_agree():
  # WRN-28-2 by hand: 3 groups of 71.3 M, the stem and the classifier.
  macs = {impl: bench_flops.forward_macs(registry.build(
      'WRN28', num_classes=10, input_shape=(32, 32, 3), impl=impl))
          for impl in ('lean', 'keras')}
  assert macs['lean'] == macs['keras'] == 214_353_152


def test_flops_refuse_an_unknown_kernel_layer():
  class Odd(keras.layers.Layer):
    def build(self, shape):
      self.kernel = self.add_weight(shape=(3, 3, 3, 2), name='kernel')

    def call(self, x):
      return x
  inputs = keras.Input((4, 4, 3))
  with pytest.raises(ValueError, match="layer 'odd'"):
    bench_flops.forward_macs(keras.Model(inputs, Odd(name='odd')(inputs)))


MACHINE = dict(case='machine', tensorflow='2.99', onednn=True,
               built_with_cuda=False, gpus=[], gpu_reason='no CUDA build',
               peaks={'float32': dict(n=64, dtype='float32', repeats=1,
                                      best_gflops=100.0, median_gflops=90.0),
                      'bfloat16': dict(n=64, dtype='bfloat16', repeats=1,
                                       best_gflops=200.0, median_gflops=1.0)})


def test_driver_prints_the_machine_with_every_table(monkeypatch, capsys,
                                                    tmp_path):
  speed = {'lean': 2.0, 'keras': 1.0}

  def fake_run(spec):
    if spec['case'] == 'machine':
      return dict(MACHINE)
    impl, prec = spec['net_impl'], spec['extra']['mixed_precision']
    steps = speed[impl] * (3 if prec == 'bfloat16' else 1)
    return dict(case=spec['case'], replicas=1, images_per_step=960,
                sec_per_step=1 / steps, steps_per_sec=steps,
                images_per_sec=960 * steps, train_flops_per_step=5e9,
                forward_macs_per_image=1, peak_rss_gb=2.0,
                time_to_first_step_s=1.0, imports_s=0.5, built_s=0.7)
  monkeypatch.setattr(benchmark, '_run', fake_run)
  out_json = tmp_path / 'b.json'
  monkeypatch.setattr(sys, 'argv', ['benchmark.py', '--cases=fixmatch',
                                    '--repeats=2', f'--json={out_json}'])
  assert benchmark.main() == 0
  out = capsys.readouterr().out
  assert out.count('Vector extensions: AVX2') == 3  # Start and both tables.
  assert out.count('TensorFlow 2.99; oneDNN on; GPU found: no (no CUDA '
                   'build)') == 3
  assert 'float32 100 GFLOP/s' in out and 'bfloat16 200 GFLOP/s' in out
  # lean float32: 2 steps/s x 5 GFLOP = 10 GFLOP/s, 10% / 5% of the peaks.
  assert '| fixmatch | lean float32 | base | 1 | 2 | 0.50 | 1920 | 10.0 | ' \
      '10% | 5% |' in out
  assert 'lean float32 / keras float32 | 2 | 2.000, 2.000 | **2.000**' in out
  assert 'lean bfloat16 / keras float32 | 2 | 6.000, 6.000 | **6.000**' in out
  assert 'keras bfloat16 / keras float32 | 2 | 3.000, 3.000 | **3.000**' in out
  saved = json.loads(out_json.read_text())
  assert saved['machine']['tensorflow'] == '2.99'
  assert 'AVX2' in saved['machine']['flags']
  assert len(saved['results']) == 8 and len(saved['pairs']) == 6
  assert {s['median_ratio'] for s in saved['pair_summary']} == {2.0, 6.0, 3.0}


def test_driver_unpaired_variants(monkeypatch, capsys):
  specs = []

  def fake_run(spec):
    specs.append(spec)
    if spec['case'] == 'machine':
      return dict(MACHINE)
    return dict(case=spec['case'], replicas=1, images_per_step=10,
                sec_per_step=1.0, steps_per_sec=1.0, images_per_sec=10.0,
                peak_rss_gb=1.0, time_to_first_step_s=1.0, imports_s=0.5,
                built_s=0.7)
  monkeypatch.setattr(benchmark, '_run', fake_run)
  monkeypatch.setattr(sys, 'argv', [
      'benchmark.py', '--no-paired', '--cases=fixmatch', '--net_impl=keras',
      '--variants=base:,bf16:mixed_precision=bfloat16;steps_per_loop=2'])
  assert benchmark.main() == 0
  out = capsys.readouterr().out
  assert [s['case'] for s in specs] == ['machine', 'fixmatch', 'fixmatch',
                                        'machine']  # The peak: again at the end.
  runs = [(s['net_impl'], s['extra']) for s in specs[1:-1]]
  assert runs == [('keras', {'cpu_replicas': 0, 'mixed_precision': 'float32'}),
                  ('keras', {'cpu_replicas': 0, 'mixed_precision': 'bfloat16',
                             'steps_per_loop': 2})]
  assert '| fixmatch | keras bfloat16 | bf16 | 1 | 1 |' in out
  assert 'Like-for-like pairs' not in out


@pytest.mark.parametrize('flag,message', [
    ('--precisions=float8', '--precisions: unknown'),
    ('--impls=lean', '--impls='),
    ('--cases=fixmatch,nope', '--cases: unknown'),
    ('--variants=x:jit_compile', 'is not flag=value'),
    ('--cpu_replicas=two', '--cpu_replicas='),
    ('--workers=0', '--workers='),
    ('--workers=two', '--workers='),
])
def test_bad_input_exits_2(flag, message):
  proc = subprocess.run([sys.executable, str(ROOT / 'scripts/benchmark.py'),
                         flag], capture_output=True, text=True, check=False)
  assert proc.returncode == 2, proc.stderr
  assert message in proc.stderr


def test_peak_is_measured_again_after_the_runs_and_the_best_counts(
    monkeypatch, capsys):
  """A start-up moment of contention must not set the peak: the driver
  measures it again after the runs and divides by the better of the two."""
  probes = []

  def fake_run(spec):
    if spec['case'] == 'machine':
      probes.append(spec['peak_dtypes'])
      machine = dict(MACHINE)
      if len(probes) == 2:  # The second probe finds float32 twice as fast.
        machine['peaks'] = dict(MACHINE['peaks'], float32=dict(
            MACHINE['peaks']['float32'], best_gflops=200.0))
      return machine
    return dict(case=spec['case'], replicas=1, images_per_step=960,
                sec_per_step=0.5, steps_per_sec=2.0, images_per_sec=1920,
                train_flops_per_step=5e9, forward_macs_per_image=1,
                peak_rss_gb=2.0, time_to_first_step_s=1.0, imports_s=0.5,
                built_s=0.7)
  monkeypatch.setattr(benchmark, '_run', fake_run)
  monkeypatch.setattr(sys, 'argv', ['benchmark.py', '--cases=fixmatch',
                                    '--precisions=float32'])
  assert benchmark.main() == 0
  out = capsys.readouterr().out
  assert len(probes) == 2 and probes[1] == ['float32', 'bfloat16']
  # 10 GFLOP/s: 10% of the first float32 peak per run, 5% in the tables.
  assert '(10% of float32 peak, 5% of bfloat16 peak)' in out
  assert '| fixmatch | lean float32 | base | 1 | 1 | 0.50 | 1920 | 10.0 | ' \
      '5% | 5% |' in out
  assert ('float32 200 GFLOP/s (64x64, 1 runs; best of the measurements at '
          'the start and the end: 100, 200)') in out


def test_combine_peaks_keeps_the_best_and_every_measurement():
  first = {'float32': dict(n=8, dtype='float32', repeats=5, best_gflops=110.0,
                           median_gflops=100.0)}
  second = {'float32': dict(n=8, dtype='float32', repeats=9, best_gflops=190.0,
                            median_gflops=180.0)}
  both = machine_info.combine_peaks(first, second, None)
  assert both['float32']['best_gflops'] == 190.0
  assert both['float32']['repeats'] == 9
  assert both['float32']['measurements'] == [110.0, 190.0]
  assert machine_info.combine_peaks(second, first)['float32'][
      'measurements'] == [190.0, 110.0]


def test_matmul_peak_times_at_least_the_minimum():
  peak = machine_info.matmul_peak(32, 'float32', repeats=2, min_seconds=0.05,
                                  max_calls=1000)
  assert peak['repeats'] >= 2 and peak['best_gflops'] >= peak['median_gflops']
  few = machine_info.matmul_peak(32, 'float32', repeats=3, min_seconds=0.0)
  assert few['repeats'] == 3
