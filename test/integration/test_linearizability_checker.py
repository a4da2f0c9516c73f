"""The linearizability checker on hand-made histories: it accepts linearizable ones (with
concurrency and unknown outcomes) and rejects known non-linearizable ones (stale reads,
lost or reordered writes, phantom values, double adds, double cas wins, an unknown write
that is seen and then unseen). Needs no server; --binary is accepted for ctest's sake."""

import random

import harness
import linearizability as lin

U = lin.UNKNOWN


def op(client, kind, value, output, call, ret, key="k"):
    """call and ret in ms; ret None = outcome unknown."""
    return lin.Operation(client=client, key=key, kind=kind, input=value, output=output,
                         call=int(call * 1e6), ret=None if ret is None else int(ret * 1e6))


class AcceptsLinearizable(harness.TestCase):
    def assert_ok(self, ops):
        result = lin.check(ops)
        self.assertTrue(result.ok, result.explain())
        return result

    def test_empty_history(self):
        self.assertTrue(lin.check([]).ok)

    def test_sequential_history(self):
        self.assert_ok([
            op(1, "get", None, None, 0, 1),
            op(1, "set", "a", "STORED", 2, 3),
            op(1, "get", None, "a", 4, 5),
            op(1, "add", "b", "NOT_STORED", 6, 7),
            op(1, "cas", ("a", "c"), "STORED", 8, 9),
            op(1, "cas", ("a", "d"), "EXISTS", 10, 11),
            op(1, "get", None, "c", 12, 13),
            op(1, "delete", None, "DELETED", 14, 15),
            op(1, "delete", None, "NOT_FOUND", 16, 17),
            op(1, "cas", ("c", "e"), "NOT_FOUND", 18, 19),
            op(1, "add", "f", "STORED", 20, 21),
            op(1, "get", None, "f", 22, 23),
        ])

    def test_concurrent_reads_may_see_either_side_of_a_write(self):
        self.assert_ok([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "set", "b", "STORED", 2, 10),
            op(3, "get", None, "b", 3, 4),   # the write took effect early...
            op(4, "get", None, "b", 5, 6),   # ...so everything after sees it
            op(5, "get", None, "a", 2.5, 9), # and this overlapping read linearized before it
        ])

    def test_overlapping_writes_in_either_order(self):
        self.assert_ok([
            op(1, "set", "a", "STORED", 0, 10),
            op(2, "set", "b", "STORED", 1, 11),
            op(3, "get", None, "a", 12, 13),  # b then a
        ])
        self.assert_ok([
            op(1, "set", "a", "STORED", 0, 10),
            op(2, "set", "b", "STORED", 1, 11),
            op(3, "get", None, "b", 12, 13),  # a then b
        ])

    def test_unknown_write_may_take_effect_late(self):
        # The timed-out write is seen long after the client gave up on it.
        self.assert_ok([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "set", "x", U, 2, None),
            op(3, "get", None, "a", 10, 11),
            op(3, "get", None, "x", 50, 51),
            op(3, "get", None, "x", 60, 61),
        ])

    def test_unknown_write_may_never_take_effect(self):
        self.assert_ok([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "set", "x", U, 2, None),
            op(2, "delete", None, U, 3, None),
            op(3, "get", None, "a", 100, 101),
        ])

    def test_unknown_read_constrains_nothing(self):
        self.assert_ok([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "get", None, U, 2, None),
            op(3, "get", None, "a", 3, 4),
        ])

    def test_ties_count_as_concurrent(self):
        # A read that ends at the very instant a write starts may still see it.
        self.assert_ok([
            op(1, "set", "a", "STORED", 5, 6),
            op(2, "get", None, "a", 0, 5),
        ])

    def test_keys_are_independent(self):
        self.assert_ok([
            op(1, "set", "a", "STORED", 0, 1, key="k1"),
            op(1, "set", "b", "STORED", 2, 3, key="k2"),
            op(2, "get", None, None, 4, 5, key="k3"),
            op(2, "get", None, "a", 6, 7, key="k1"),
            op(2, "get", None, "b", 8, 9, key="k2"),
        ])

    def test_a_random_sequential_register_is_linearizable(self):
        # Histories produced by a real sequential register, with jittered overlapping
        # intervals around each linearization point, must always pass.
        rng = random.Random(7)
        for trial in range(30):
            state, ops, t = None, [], 0.0
            for i in range(40):
                kind = rng.choice(["set", "get", "get", "add", "cas", "delete"])
                value = f"v{trial}-{i}"
                point = t
                t += 1.0
                if kind == "set":
                    out, state, arg = "STORED", value, value
                elif kind == "get":
                    out, arg = state, None
                elif kind == "add":
                    arg = value
                    out = "STORED" if state is None else "NOT_STORED"
                    state = value if state is None else state
                elif kind == "cas":
                    expected = state if rng.random() < 0.7 else "nope"
                    arg = (expected, value)
                    if state is None:
                        out = "NOT_FOUND"
                    elif state == expected:
                        out, state = "STORED", value
                    else:
                        out = "EXISTS"
                else:
                    arg = None
                    out = "DELETED" if state is not None else "NOT_FOUND"
                    state = None
                call = point - rng.uniform(0, 3)
                ret = point + rng.uniform(0, 3)
                if kind != "get" and rng.random() < 0.1:
                    out, ret = U, None
                ops.append(op(i, kind, arg, out, call, ret))
            result = lin.check(ops)
            self.assertTrue(result.ok, f"trial {trial}\n" + result.explain())


class RejectsNonLinearizable(harness.TestCase):
    def assert_violation(self, ops, key="k"):
        result = lin.check(ops)
        self.assertFalse(result.ok)
        self.assertEqual([r.key for r in result.violations], [key], result.explain())
        text = result.explain()
        self.assertIn("NOT linearizable", text)
        return result

    def test_stale_read_after_acknowledged_write(self):
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "get", None, None, 2, 3),
        ])

    def test_stale_read_of_an_older_value(self):
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 1),
            op(1, "set", "b", "STORED", 2, 3),
            op(2, "get", None, "a", 4, 5),
        ])

    def test_value_that_was_never_written(self):
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "get", None, "zzz", 2, 3),
        ])

    def test_reads_go_back_in_time(self):
        # Two writes overlap, so either order is fine, but once a later read saw b, a
        # read after it cannot see a again.
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 10),
            op(2, "set", "b", "STORED", 0, 10),
            op(3, "get", None, "b", 11, 12),
            op(4, "get", None, "a", 13, 14),
        ])

    def test_porcupine_style_register_violation(self):
        # w1 [0,10], w2 [5,15], r->2 [11,12], r->1 [13,14]: after r->2, w1 must already be
        # linearized (it returned at 10), so nothing can bring 1 back.
        self.assert_violation([
            op(1, "set", "1", "STORED", 0, 10),
            op(2, "set", "2", "STORED", 5, 15),
            op(3, "get", None, "2", 11, 12),
            op(3, "get", None, "1", 13, 14),
        ])

    def test_acknowledged_write_lost(self):
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "get", None, "a", 2, 3),
            op(3, "get", None, None, 100, 101),  # e.g. after a restart of every node
        ])

    def test_two_adds_both_succeed(self):
        self.assert_violation([
            op(1, "add", "a", "STORED", 0, 5),
            op(2, "add", "b", "STORED", 1, 6),
        ])

    def test_two_cas_from_the_same_version_both_win(self):
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "cas", ("a", "b"), "STORED", 2, 6),
            op(3, "cas", ("a", "c"), "STORED", 3, 7),
        ])

    def test_cas_refused_although_the_value_matched(self):
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "cas", ("a", "b"), "EXISTS", 2, 3),
        ])

    def test_unknown_write_seen_then_unseen(self):
        # An unknown-outcome write may take effect, but not take effect and then undo itself.
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "set", "x", U, 2, None),
            op(3, "get", None, "x", 10, 11),
            op(3, "get", None, "a", 12, 13),
        ])

    def test_delete_not_found_after_a_visible_value(self):
        self.assert_violation([
            op(1, "set", "a", "STORED", 0, 1),
            op(2, "delete", None, "NOT_FOUND", 2, 3),
        ])

    def test_only_the_bad_key_is_reported(self):
        ops = [op(1, "set", "a", "STORED", 0, 1, key=f"good{i}") for i in range(5)]
        ops += [op(2, "get", None, "a", 2, 3, key=f"good{i}") for i in range(5)]
        ops += [op(1, "set", "a", "STORED", 0, 1, key="bad"),
                op(2, "get", None, None, 2, 3, key="bad")]
        result = self.assert_violation(ops, key="bad")
        self.assertEqual(len(result.keys), 6)
        bad = result.keys["bad"]
        # The explanation names the operation that cannot be placed.
        self.assertTrue(any(o.kind == "get" and o.output is None for o in bad.stuck),
                        bad.explain())

    def test_violation_hidden_among_concurrency(self):
        # Many overlapping writes and consistent reads, then one read of a value that was
        # overwritten by a write that finished before the read began.
        ops = []
        for i in range(12):
            ops.append(op(i, "set", f"v{i}", "STORED", i, i + 6))
        ops.append(op(20, "get", None, "v11", 18, 19))
        ops.append(op(21, "set", "last", "STORED", 20, 21))
        ops.append(op(22, "get", None, "v3", 22, 23))
        self.assert_violation(ops)


class SearchIsBounded(harness.TestCase):
    def test_budget_exhaustion_is_undecided_not_ok(self):
        # Many concurrent writes and a read of a value nobody wrote: the search has to try
        # every order before it can reject; with a tiny budget it must say "undecided".
        ops = [op(i, "set", f"v{i}", "STORED", 0, 100) for i in range(14)]
        ops.append(op(99, "get", None, "nobody", 101, 102))
        result = lin.check(ops, max_steps_per_key=500)
        self.assertFalse(result.ok)
        self.assertEqual(len(result.undecided), 1)
        self.assertEqual(result.violations, [])
        # The memoization makes the full answer cheap enough anyway.
        full = lin.check(ops)
        self.assertEqual(len(full.violations), 1, full.explain())

    def test_a_realistic_key_history_is_fast(self):
        # 200 operations by 8 clients with overlaps and some unknown outcomes.
        rng = random.Random(3)
        state, ops, t = None, [], 0.0
        for i in range(200):
            kind = rng.choice(["set", "get", "get", "cas"])
            point = t
            t += 1.0
            value = f"x{i}"
            if kind == "set":
                arg, out, state = value, "STORED", value
            elif kind == "get":
                arg, out = None, state
            else:
                arg = (state, value)
                out = "STORED" if state is not None else "NOT_FOUND"
                state = value if state is not None else state
            ret = point + rng.uniform(0, 4)
            if kind != "get" and rng.random() < 0.05:
                out, ret = U, None
            ops.append(op(i % 8, kind, arg, out, point - rng.uniform(0, 4), ret))
        result = lin.check(ops, max_steps_per_key=200_000)
        self.assertTrue(result.ok, result.explain())


class HistoryRecorder(harness.TestCase):
    def test_records_calls_returns_and_unknowns(self):
        h = lin.History()
        a = h.invoke(1, "k", "set", "v")
        h.complete(a, "STORED")
        b = h.invoke(2, "k", "get")
        h.complete(b, "v")
        c = h.invoke(3, "k", "set", "w")
        h.unknown(c)
        ops = h.ops()
        self.assertEqual(len(ops), 3)
        self.assertLessEqual(ops[0].call, ops[0].ret)
        self.assertLessEqual(ops[0].ret, ops[1].call)
        self.assertIsNone(ops[2].ret)
        self.assertEqual(ops[2].output, U)
        self.assertEqual(h.keys(), ["k"])
        self.assertTrue(lin.check(ops).ok)


if __name__ == "__main__":
    harness.main()
