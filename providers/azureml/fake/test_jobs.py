"""Search-space sampling and durations of the fake's job runner (no server, no blob)."""

import math
import unittest

import fake_jobs


class SearchSpaces(unittest.TestCase):
    def test_grid_takes_every_combination_of_the_choices_in_key_order(self):
        space = {"b": ["choice", [[1, 2]]], "a": ["choice", [["x", "y"]]]}
        self.assertEqual(
            fake_jobs.sample(space, "Grid", None, 10),
            [{"a": "x", "b": 1}, {"a": "x", "b": 2}, {"a": "y", "b": 1}, {"a": "y", "b": 2}],
        )
        self.assertEqual(len(fake_jobs.sample(space, "grid", None, 3)), 3)

    def test_random_draws_are_reproducible_with_a_seed_and_stay_in_range(self):
        space = {
            "lr": ["loguniform", [math.log(0.001), math.log(0.1)]],
            "depth": ["randint", [5]],
            "n": ["quniform", [10, 100, 10]],
            "c": ["uniform", [0.5, 1.5]],
        }
        first = fake_jobs.sample(space, "Random", 7, 50)
        self.assertEqual(first, fake_jobs.sample(space, "Random", 7, 50))
        self.assertNotEqual(first, fake_jobs.sample(space, "Random", 8, 50))
        for hp in first:
            self.assertTrue(0.001 <= hp["lr"] <= 0.1, hp)  # loguniform bounds are exponents
            self.assertIn(hp["depth"], range(5))
            self.assertEqual(hp["n"] % 10, 0)
            self.assertTrue(0.5 <= hp["c"] <= 1.5)

    def test_bad_expressions_are_named_by_their_target(self):
        errors = fake_jobs.search_space_errors(
            {"a": ["uniform", [1, 0]], "b": ["between", [0, 1]], "c": ["choice", [[]]], "d": ["choice", [[1]]]}, "Random"
        )
        self.assertEqual([t for t, _ in errors], ["properties.searchSpace.a", "properties.searchSpace.b", "properties.searchSpace.c"])
        grid = fake_jobs.search_space_errors({"a": ["randint", [3]]}, "Grid")
        self.assertIn("Grid sampling takes only choice", grid[0][1])


class Durations(unittest.TestCase):
    def test_iso_8601_durations(self):
        self.assertEqual(fake_jobs.duration_seconds("PT2H"), 7200)
        self.assertEqual(fake_jobs.duration_seconds("P1DT30M"), 88200)
        self.assertEqual(fake_jobs.duration_seconds("PT1.5S"), 1.5)
        self.assertIsNone(fake_jobs.duration_seconds("2h"))
        self.assertIsNone(fake_jobs.duration_seconds(None))


if __name__ == "__main__":
    unittest.main()
