"""Checks of scripts/eval-routing's metrics on synthetic data (no fleet, no data files).

    python3 -m unittest discover -s scripts -p 'test_eval_routing.py'
"""

import random
import sys
import unittest
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

_PATH = Path(__file__).resolve().parent / "eval-routing"
_loader = SourceFileLoader("eval_routing", str(_PATH))
er = module_from_spec(spec_from_loader("eval_routing", _loader))
sys.modules["eval_routing"] = er  # dataclasses look their module up
_loader.exec_module(er)


def synthetic(n=400, seed=7):
    """Binary outcomes as on MMLU: both right, only strong right, both wrong, only weak right."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        kind = rng.choices(["both", "strong", "neither", "weak"], [0.6, 0.2, 0.15, 0.05])[0]
        weak = 1.0 if kind in ("both", "weak") else 0.0
        strong = 1.0 if kind in ("both", "strong") else 0.0
        items.append(er.Item("synthetic", str(i), "x" * rng.randint(1, 500), weak, strong))
    return items


class CurveTest(unittest.TestCase):
    def test_curve_ends_at_weak_only_and_strong_only(self):
        items = synthetic()
        weak = [it.weak for it in items]
        strong = [it.strong for it in items]
        points = er.curve([it.needs_strong or 0.0 for it in items], weak, strong)
        self.assertEqual(points[0], (0.0, sum(weak) / len(items)))
        self.assertAlmostEqual(points[-1][0], 1.0)
        self.assertAlmostEqual(points[-1][1], sum(strong) / len(items))
        # One group of ties: a straight line, APGR exactly one half.
        self.assertEqual(len(points), 2)
        self.assertAlmostEqual(er.apgr(points), 0.5)

    def test_no_gap_has_no_apgr(self):
        points = er.curve([1.0, 2.0], [1.0, 1.0], [1.0, 1.0])
        self.assertIsNone(er.apgr(points))
        self.assertIsNone(er.cpt(points, 0.5))
        self.assertEqual(er.q95(points), 0.0)

    def test_thresholds_interpolate_inside_a_segment(self):
        # Two prompts, only the first needs the strong model; ranked right.
        points = er.curve([1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
        self.assertEqual(points, [(0.0, 0.5), (0.5, 1.0), (1.0, 1.0)])
        self.assertAlmostEqual(er.cpt(points, 0.5), 0.25)
        self.assertAlmostEqual(er.cpt(points, 0.8), 0.4)
        self.assertAlmostEqual(er.q95(points), 0.45)
        self.assertAlmostEqual(er.apgr(points), 0.75)


class RankingTest(unittest.TestCase):
    def setUp(self):
        self.items = synthetic()
        self.weak = [it.weak for it in self.items]
        self.strong = [it.strong for it in self.items]

    def apgr_of(self, scores):
        return er.apgr(er.curve(scores, self.weak, self.strong))

    def test_oracle_recovers_everything_early(self):
        # Where the weak model alone is right, PGR passes 1 before the end, so the oracle's APGR
        # is at least 1; with no only-weak-right prompts it is 1 up to the share it needs.
        oracle = self.apgr_of(er.oracle_score(self.items, random.Random(0)))
        self.assertGreaterEqual(oracle, 1.0)
        only_strong = [it for it in self.items if not (it.weak and not it.strong)]
        w = [it.weak for it in only_strong]
        s = [it.strong for it in only_strong]
        needed = sum(1 for it in only_strong if it.strong > it.weak) / len(only_strong)
        points = er.curve(er.oracle_score(only_strong, random.Random(0)), w, s)
        self.assertAlmostEqual(er.apgr(points), 1.0 - needed / 2)
        self.assertAlmostEqual(er.cpt(points, 1.0), needed)

    def test_random_is_about_one_half(self):
        values = [self.apgr_of(er.random_score(self.items, random.Random(seed))) for seed in range(50)]
        self.assertAlmostEqual(sum(values) / len(values), 0.5, delta=0.03)

    def test_inverted_oracle_is_about_zero(self):
        inverted = [-s for s in er.oracle_score(self.items, random.Random(0))]
        self.assertLess(self.apgr_of(inverted), 0.05)

    def test_bootstrap_intervals_contain_the_point_estimate(self):
        for it, u in zip(self.items, [random.Random(3).random() for _ in self.items]):
            it.needs_strong = (it.strong - it.weak) + u  # a noisy but useful router
            it.strong_call = it.needs_strong > 0.9
            it.difficulty = "simple"
        result = er.evaluate(self.items, er.SCORERS, replicates=100, seed=1)
        for name, metrics in result["rankings"].items():
            for metric, m in metrics.items():
                if m["value"] is None:
                    continue
                lo, hi = m["ci"]
                self.assertLessEqual(lo, m["value"] + 1e-9, (name, metric, m))
                self.assertGreaterEqual(hi, m["value"] - 1e-9, (name, metric, m))
        for metric, m in result["operating_point"].items():
            lo, hi = m["ci"]
            self.assertTrue(lo - 1e-9 <= m["value"] <= hi + 1e-9, (metric, m))
        router = result["rankings"]["router"]["apgr"]["value"]
        self.assertGreater(router, result["rankings"]["length"]["apgr"]["ci"][1])
        # The same seed gives the same report.
        again = er.evaluate(self.items, er.SCORERS, replicates=100, seed=1)
        self.assertEqual(result["rankings"], again["rankings"])


if __name__ == "__main__":
    unittest.main()
