"""Like-for-like pairs for scripts/benchmark.py: the run plan (default build
and plain-Keras build alternating, each run its own process), the ratio of
each pair and the medians, and the tables. No TensorFlow.

With builds (A, B) = ('lean', 'keras') and precisions (float32, bfloat16),
one repeat of a paired case runs A-float32, B-float32, A-bfloat16,
B-bfloat16 in that order, and forms the comparisons

  A float32  / B float32     (the default build against plain layers)
  A bfloat16 / B float32     (what bfloat16 gives the default build)
  B bfloat16 / B float32     (what bfloat16 gives the plain build)

each as a ratio of images/s within the same repeat.
"""
from __future__ import annotations

import statistics
from typing import Iterable, List, Sequence, Tuple

PAIRED_CASES = ('fixmatch', 'mixmatch', 'eval', 'label')
REFERENCE_PRECISION = 'float32'


def build_order(precisions: Sequence[str],
                impls: Tuple[str, str]) -> List[Tuple[str, str]]:
  """The (impl, precision) runs of one repeat, alternating the two builds;
  the reference (B, float32) runs even when float32 is not asked for."""
  a, b = impls
  order = [(impl, p) for p in precisions for impl in (a, b)]
  if (b, REFERENCE_PRECISION) not in order:
    order.insert(0, (b, REFERENCE_PRECISION))
  return order


def comparisons(precisions: Sequence[str], impls: Tuple[str, str]
                ) -> List[Tuple[Tuple[str, str], Tuple[str, str]]]:
  """(measured (impl, precision), reference (impl, precision)) pairs."""
  a, b = impls
  ref = (b, REFERENCE_PRECISION)
  out = []
  for p in precisions:
    out.append(((a, p), ref))
    if p != REFERENCE_PRECISION:
      out.append(((b, p), ref))
  return out


def plan(cases: Sequence[str], precisions: Sequence[str],
         impls: Tuple[str, str], repeats: int, variants: Sequence[tuple]
         ) -> List[dict]:
  """Every run in order: {repeat, variant, extra, case, impl, precision}.

  Paired cases run `build_order` per repeat; the others (pipeline,
  scaling) once per repeat with the network's default build in float32.
  """
  runs = []
  for repeat in range(repeats):
    for vname, extra in variants:
      for case in cases:
        order = (build_order(precisions, impls) if case in PAIRED_CASES
                 else [('', REFERENCE_PRECISION)])
        for impl, precision in order:
          runs.append(dict(repeat=repeat, variant=vname, extra=dict(extra),
                           case=case, impl=impl, precision=precision))
  return runs


def _key(r: dict) -> tuple:
  return (r['variant'], r['case'], r['impl'], r['precision'], r['repeat'])


def pair_results(results: Iterable[dict], precisions: Sequence[str],
                 impls: Tuple[str, str]) -> List[dict]:
  """One record per comparison and repeat where both runs finished:
  variant, case, measured / reference labels, repeat, both images/s and
  peak RSS, ratio = measured images/s / reference images/s."""
  results = [r for r in results if 'images_per_sec' in r]
  by_key = {_key(r): r for r in results}
  seen = list(dict.fromkeys((r['variant'], r['case'], r['repeat'])
                            for r in results if r['case'] in PAIRED_CASES))
  out = []
  for variant, case, repeat in seen:
    for measured, reference in comparisons(precisions, impls):
      m = by_key.get((variant, case) + measured + (repeat,))
      ref = by_key.get((variant, case) + reference + (repeat,))
      if m is None or ref is None:
        continue
      out.append(dict(
          variant=variant, case=case, repeat=repeat,
          measured=label(*measured), reference=label(*reference),
          measured_images_per_sec=m['images_per_sec'],
          reference_images_per_sec=ref['images_per_sec'],
          measured_peak_rss_gb=m.get('peak_rss_gb'),
          reference_peak_rss_gb=ref.get('peak_rss_gb'),
          ratio=m['images_per_sec'] / ref['images_per_sec']))
  return out


def label(impl: str, precision: str) -> str:
  return f'{impl or "default"} {precision}'


def summarize_pairs(pairs: Iterable[dict]) -> List[dict]:
  """Per (variant, case, measured, reference): the ratios in repeat order
  and their median, and the median images/s and peak RSS of each side."""
  groups = {}
  for p in pairs:
    groups.setdefault((p['variant'], p['case'], p['measured'],
                       p['reference']), []).append(p)
  out = []
  for (variant, case, measured, reference), ps in groups.items():
    ps = sorted(ps, key=lambda p: p['repeat'])
    med = lambda k: _median([p[k] for p in ps if p[k] is not None])
    out.append(dict(variant=variant, case=case, measured=measured,
                    reference=reference, ratios=[p['ratio'] for p in ps],
                    median_ratio=med('ratio'),
                    measured_images_per_sec=med('measured_images_per_sec'),
                    reference_images_per_sec=med('reference_images_per_sec'),
                    measured_peak_rss_gb=med('measured_peak_rss_gb'),
                    reference_peak_rss_gb=med('reference_peak_rss_gb')))
  return out


def _median(values: list):
  return statistics.median(values) if values else None


def _fmt(value, spec: str) -> str:
  return '' if value is None else format(value, spec)


def pairs_table(summary: Sequence[dict]) -> str:
  """Markdown: one row per comparison with every pair's ratio."""
  lines = ['| case | variant | measured / reference | pairs | ratio per pair '
           '| median ratio | images/s measured | images/s reference '
           '| peak RSS measured / reference (GB) |',
           '| --- ' * 9 + '|']
  for s in summary:
    lines.append(
        f"| {s['case']} | {s['variant']} | {s['measured']} / "
        f"{s['reference']} | {len(s['ratios'])} | "
        f"{', '.join(f'{r:.3f}' for r in s['ratios'])} | "
        f"**{s['median_ratio']:.3f}** | "
        f"{_fmt(s['measured_images_per_sec'], '.1f')} | "
        f"{_fmt(s['reference_images_per_sec'], '.1f')} | "
        f"{_fmt(s['measured_peak_rss_gb'], '.2f')} / "
        f"{_fmt(s['reference_peak_rss_gb'], '.2f')} |")
  return '\n'.join(lines)
