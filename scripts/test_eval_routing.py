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


class OnlineTest(unittest.TestCase):
    """The learning curve's metrics (scripts/eval-routing --online)."""

    def setUp(self):
        self.items = synthetic(300, seed=11)
        self.weak = [it.weak for it in self.items]
        self.strong = [it.strong for it in self.items]
        rng = random.Random(5)
        self.noise = [rng.random() for _ in self.items]

    def metrics(self, scores, calls, prior_scores, prior_calls, replicates=100):
        return er.checkpoint_metrics(scores, calls, prior_scores, prior_calls, self.weak, self.strong,
                                     replicates, seed=3)

    def test_the_prior_against_itself_is_zero(self):
        calls = [u > 0.6 for u in self.noise]
        m = self.metrics(self.noise, calls, self.noise, calls)
        self.assertAlmostEqual(m["apgr_delta"]["value"], 0.0)
        self.assertEqual(m["apgr_delta"]["ci"], [0.0, 0.0])
        self.assertEqual(m["quality_delta"]["ci"], [0.0, 0.0])
        self.assertAlmostEqual(m["strong_share"]["value"], sum(calls) / len(calls))

    def test_a_better_ranking_rises_measurably(self):
        oracle = [it.strong - it.weak + 0.01 * u for it, u in zip(self.items, self.noise)]
        calls = [s > 0.5 for s in oracle]
        prior_calls = [u > 0.8 for u in self.noise]
        m = self.metrics(oracle, calls, self.noise, prior_calls)
        self.assertGreater(m["apgr_delta"]["ci"][0], 0.0, m["apgr_delta"])
        # Sending exactly the prompts only the strong model gets right beats the prior's curve at
        # that share, and its PGR is 1.
        self.assertGreater(m["quality_vs_prior_curve"]["ci"][0], 0.0, m["quality_vs_prior_curve"])
        self.assertAlmostEqual(m["pgr"]["value"], 1.0 + sum(
            1 for it in self.items if it.weak > it.strong) / sum(it.strong - it.weak for it in self.items))
        for k, v in m.items():
            lo, hi = v["ci"]
            self.assertTrue(lo - 1e-9 <= v["value"] <= hi + 1e-9, (k, v))
        self.assertEqual(m, self.metrics(oracle, calls, self.noise, prior_calls), "seeded")

    def test_decisions_on_the_prior_curve_gain_nothing_at_equal_cost(self):
        # Strong calls for the top fifth of the prior's own ranking: a point of its curve.
        order = sorted(range(len(self.items)), key=lambda i: -self.noise[i])
        top = set(order[: len(order) // 5])
        calls = [i in top for i in range(len(self.items))]
        m = self.metrics(self.noise, calls, self.noise, calls, replicates=0)
        self.assertAlmostEqual(m["quality_vs_prior_curve"]["value"], 0.0, places=9)

    def test_quality_at_interpolates(self):
        points = [(0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]
        self.assertAlmostEqual(er.quality_at(points, 0.25), 0.75)
        self.assertEqual(er.quality_at(points, 0.0), 0.5)
        self.assertEqual(er.quality_at(points, 1.0), 1.0)

    def test_predicted_gain_and_its_ties(self):
        route = {"predicted_quality": [{"model": "s", "quality": 0.9}, {"model": "w", "quality": 0.6}]}
        self.assertAlmostEqual(er.predicted_gain(route, "w", "s"), 0.3)
        self.assertIsNone(er.predicted_gain({"predicted_quality": []}, "w", "s"))
        # Equal gains are ordered by needs_strong; any gain difference outranks needs_strong.
        self.assertGreater(er.gain_score(0.3, 0.9), er.gain_score(0.3, 0.1))
        self.assertGreater(er.gain_score(0.3001, 0.0), er.gain_score(0.3, 1.0))

    def test_stream_windows(self):
        events = [{"explored": i % 10 == 0, "strong_call": i % 2 == 0, "reward": 1.0 if i < 5 else 0.0,
                   "fallback": False} for i in range(12)]
        w = er.stream_windows(events, 5)
        self.assertEqual([x["events"] for x in w], [[1, 5], [6, 10], [11, 12]])
        self.assertEqual([x["reward"] for x in w], [1.0, 0.0, 0.0])
        self.assertEqual(w[0]["explored"], 0.2)
        self.assertEqual(w[2]["strong_share"], 0.5)

    def test_the_stream_and_the_held_out_slice_are_disjoint(self):
        stream, held = er.split_online(self.items, 200, 100)
        self.assertEqual(len(stream), 200)
        self.assertEqual(len(held), 100)
        self.assertFalse({id(it) for it in stream} & {id(it) for it in held})
        with self.assertRaises(SystemExit):
            er.split_online(self.items, 250, 100)

    def test_length_buckets_follow_the_router(self):
        # 4 characters a token; buckets below 32, 128, 512, 2048 tokens, then 4.
        for chars, bucket in [(0, 0), (124, 0), (125, 1), (508, 1), (509, 2), (2044, 2), (2045, 3),
                              (8188, 3), (8189, 4), (10 ** 6, 4)]:
            self.assertEqual(er.length_bucket("x" * chars), bucket, chars)

    def test_a_context_ceiling_ranks_by_the_context_mean(self):
        # Context "b" gains everything, "a" nothing: ranking by context is the oracle here.
        keys = ["a", "b"] * 50
        gains = [0.0, 1.0] * 50
        weak = [1.0, 0.0] * 10
        strong = [1.0, 1.0] * 10
        ceiling = er.context_ceiling(keys, gains, ["a", "b"] * 10, [0.0] * 20, weak, strong)
        self.assertAlmostEqual(ceiling, 0.75)
        # A context the stream never saw ranks at the overall mean, here a tie: APGR one half.
        self.assertAlmostEqual(er.context_ceiling(keys, gains, ["c"] * 20, [0.0] * 20, weak, strong), 0.5)

    def test_tier_quality_reads_the_catalogue(self):
        base = er.DEFAULT_POLICY.read_text(encoding="utf-8")
        q = er.tier_quality(base, er.ONLINE_WEAK)
        self.assertEqual(set(q), {"simple", "medium", "hard"})
        self.assertGreater(q["simple"], q["hard"])
        self.assertIsNone(er.tier_quality(base, "nope/none"))

    def test_the_online_policy_ranks_the_pair_by_score(self):
        base = er.DEFAULT_POLICY.read_text(encoding="utf-8")
        doc = er.tomllib.loads(er.online_policy(base, er.ONLINE_WEAK, er.ONLINE_STRONG, 4.0))
        rules = {r["name"]: r for r in doc["rule"]}
        self.assertEqual(list(rules), ["embed_local", "private_local", "learned_pair"])
        self.assertEqual(rules["learned_pair"]["models"], [er.ONLINE_WEAK, er.ONLINE_STRONG])
        self.assertNotIn("rank", rules["learned_pair"])  # ranked by score
        self.assertEqual(doc["calibration"]["tenant"][0]["tenant"], er.HOLDOUT_TENANT)
        self.assertEqual(len(doc["model"]), len(er.tomllib.loads(base)["model"]))


if __name__ == "__main__":
    unittest.main()
