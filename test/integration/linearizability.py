"""A linearizability checker for histories of concurrent key-value clients.

The idea is Porcupine's: a history is partitioned by key (operations on different keys of a
register-per-key store commute, so the whole history is linearizable iff each key's
sub-history is — Herlihy & Wing's locality), and each key's sub-history is searched with the
Wing & Gong algorithm as improved by Lowe: walk the invocation/response events in time order,
try to linearize a pending operation at the earliest possible point, backtrack when a response
is reached whose operation could not be linearized, and memoize (set of linearized operations,
model state) pairs so that no configuration is explored twice.

Operations whose outcome the client could not learn (a timeout, an error reply, a closed
connection) are treated the way Porcupine treats them: a write with an unknown outcome may
take effect at any point after its invocation, or never (its response time is +infinity, so
it may be linearized after everything, where nobody observes it); a read with an unknown
outcome constrains nothing and is dropped.

The model is a register per key with memcached semantics:

    set v        -> STORED                     state := v
    add v        -> STORED      if state is None: state := v
                 -> NOT_STORED  otherwise
    cas e -> v   -> STORED      if state == e: state := v
                 -> EXISTS      if state is not None and state != e
                 -> NOT_FOUND   if state is None
    delete       -> DELETED     if state is not None: state := None
                 -> NOT_FOUND   otherwise
    get          -> the current value, None for a miss

`cas` is recorded by value: the client reads (value, cas unique) with `gets` and then sends
`cas` with that unique. As long as every write in the history writes a value never written
before (the workloads use unique values), "the item's version is the unique the client saw"
is the same as "the item's value is the value the client saw", so a register of values models
memcached's versions exactly. A write applied twice (an at-most-once failure) changes the
version but not the value and shows up as a violation of a later cas.

The search is bounded: each key's sub-history is limited in size by the workload and the
search in steps by `max_steps`; a key whose search runs out of steps is reported as
undecided, never as linearizable.
"""

import dataclasses
import threading
import time

UNKNOWN = "<unknown>"  # the output of an operation whose outcome the client does not know
INFINITY = float("inf")

READ_KINDS = ("get",)


@dataclasses.dataclass
class Operation:
    """One client operation on one key.

    client: who issued it (operations of one client never overlap).
    key: the register it acts on.
    kind: one of set, add, cas, delete, get.
    input: set/add: the value; cas: (expected value, new value); delete/get: None.
    output: set/add/cas/delete: the reply word (STORED, NOT_STORED, EXISTS, NOT_FOUND,
        DELETED); get: the value read or None for a miss; UNKNOWN when the outcome is unknown.
    call, ret: time.monotonic_ns() at invocation and at response; ret is None when unknown.
    """
    client: int
    key: str
    kind: str
    input: object
    output: object = UNKNOWN
    call: int = 0
    ret: object = None

    def describe(self, origin=0):
        ret = "?" if self.ret is None else f"{(self.ret - origin) / 1e6:.3f}"
        arg = "" if self.input is None else f" {self.input!r}"
        return (f"[{(self.call - origin) / 1e6:.3f} .. {ret} ms] client {self.client}: "
                f"{self.kind}{arg} -> {self.output!r}")


def step(state, op):
    """The register model: returns (is this output possible in this state, next state)."""
    kind, out = op.kind, op.output
    unknown = out == UNKNOWN
    if kind == "get":
        return (unknown or out == state), state
    if kind == "set":
        return (unknown or out == "STORED"), op.input
    if kind == "add":
        if state is None:
            return (unknown or out == "STORED"), op.input
        return (unknown or out == "NOT_STORED"), state
    if kind == "cas":
        expected, new = op.input
        if state is None:
            return (unknown or out == "NOT_FOUND"), state
        if state == expected:
            return (unknown or out == "STORED"), new
        return (unknown or out == "EXISTS"), state
    if kind == "delete":
        if state is None:
            return (unknown or out == "NOT_FOUND"), state
        return (unknown or out == "DELETED"), None
    raise ValueError(f"unknown operation kind {kind!r}")


@dataclasses.dataclass
class KeyResult:
    key: str
    ok: object  # True linearizable, False not, None undecided (search budget exhausted)
    ops: list
    steps: int
    # For a violation: the longest sequence of operations that could be linearized, and the
    # operations that could not be placed after it.
    best_prefix: list = dataclasses.field(default_factory=list)
    stuck: list = dataclasses.field(default_factory=list)

    def explain(self, limit=60):
        origin = min((op.call for op in self.ops), default=0)
        lines = [f"key {self.key!r}: "
                 + {True: "linearizable", False: "NOT linearizable",
                    None: "undecided"}[self.ok]
                 + f" ({len(self.ops)} operations, {self.steps} search steps)"]
        if self.ok is False:
            lines.append("  longest linearizable prefix (last entries):")
            for op in self.best_prefix[-10:]:
                lines.append("    " + op.describe(origin))
            lines.append("  operations that cannot come next:")
            for op in self.stuck[:10]:
                lines.append("    " + op.describe(origin))
        lines.append("  history of the key (by invocation):")
        for op in sorted(self.ops, key=lambda o: o.call)[:limit]:
            lines.append("    " + op.describe(origin))
        if len(self.ops) > limit:
            lines.append(f"    ... {len(self.ops) - limit} more")
        return "\n".join(lines)


@dataclasses.dataclass
class Result:
    keys: dict  # key -> KeyResult

    @property
    def violations(self):
        return [r for r in self.keys.values() if r.ok is False]

    @property
    def undecided(self):
        return [r for r in self.keys.values() if r.ok is None]

    @property
    def ok(self):
        """True only when every key was shown linearizable."""
        return not self.violations and not self.undecided

    def summary(self):
        ops = sum(len(r.ops) for r in self.keys.values())
        unknown = sum(1 for r in self.keys.values() for op in r.ops if op.output == UNKNOWN)
        return (f"{len(self.keys)} keys, {ops} operations ({unknown} with unknown outcome): "
                f"{len(self.violations)} violations, {len(self.undecided)} undecided")

    def explain(self, limit=3):
        parts = [self.summary()]
        for r in (self.violations + self.undecided)[:limit]:
            parts.append(r.explain())
        return "\n".join(parts)


def check_key(key, ops, initial=None, max_steps=2_000_000):
    """Wing & Gong / Lowe search over one key's operations (see the module comment)."""
    ops = [op for op in ops if not (op.kind in READ_KINDS and op.output == UNKNOWN)]
    n = len(ops)
    if n == 0:
        return KeyResult(key, True, ops, 0)
    # Events: (time, 0 for a call / 1 for a return, op). At equal times calls sort first,
    # which treats the two operations as concurrent: the permissive reading, so that clock
    # granularity never produces a false violation.
    events = []
    for i, op in enumerate(ops):
        ret = INFINITY if op.ret is None or op.output == UNKNOWN else op.ret
        if ret < op.call:
            raise ValueError(f"operation returns before it is invoked: {op}")
        events.append((op.call, 0, i))
        events.append((ret, 1, i))
    events.sort(key=lambda e: (e[0], e[1], e[2]))

    # A doubly linked list over the events, node 0 the head sentinel; lifting an operation
    # unlinks its call and return events, unlifting (in LIFO order) relinks them.
    size = len(events) + 1
    nxt = list(range(1, size)) + [-1]
    prv = [-1] + list(range(0, size - 1))
    op_of = [-1] * size
    is_call = [False] * size
    match = [-1] * size
    call_node = [0] * n
    ret_node = [0] * n
    for pos, (_, kind, i) in enumerate(events, start=1):
        op_of[pos] = i
        is_call[pos] = kind == 0
        if kind == 0:
            call_node[i] = pos
        else:
            ret_node[i] = pos
    for i in range(n):
        match[call_node[i]] = ret_node[i]

    def lift(e):
        nxt[prv[e]] = nxt[e]
        if nxt[e] != -1:
            prv[nxt[e]] = prv[e]
        m = match[e]
        nxt[prv[m]] = nxt[m]
        if nxt[m] != -1:
            prv[nxt[m]] = prv[m]

    def unlift(e):
        m = match[e]
        nxt[prv[m]] = m
        if nxt[m] != -1:
            prv[nxt[m]] = m
        nxt[prv[e]] = e
        if nxt[e] != -1:
            prv[nxt[e]] = e

    state = initial
    linearized = 0
    cache = set()
    stack = []  # (call event, state before it)
    best = []
    steps = 0
    e = nxt[0]
    while nxt[0] != -1:
        steps += 1
        if steps > max_steps:
            return KeyResult(key, None, ops, steps)
        if is_call[e]:
            i = op_of[e]
            possible, new_state = step(state, ops[i])
            if possible:
                new_linearized = linearized | (1 << i)
                memo = (new_linearized, new_state)
                if memo not in cache:
                    cache.add(memo)
                    stack.append((e, state))
                    state = new_state
                    linearized = new_linearized
                    lift(e)
                    if len(stack) > len(best):
                        best = [ops[op_of[c]] for c, _ in stack]
                    e = nxt[0]
                    continue
            e = nxt[e]
        else:
            # A response whose operation is not linearized yet: nothing pending before it can
            # be placed next in this branch; undo the last choice.
            if not stack:
                return _violation(key, ops, steps, best)
            e, state = stack.pop()
            linearized &= ~(1 << op_of[e])
            unlift(e)
            e = nxt[e]
    return KeyResult(key, True, ops, steps)


def _violation(key, ops, steps, best):
    # Which operations could not follow the best prefix: those not in it that had been
    # invoked before the earliest unplaced response.
    placed = {id(op) for op in best}
    remaining = [op for op in ops if id(op) not in placed]
    first_ret = min((op.ret for op in remaining if op.ret is not None and op.output != UNKNOWN),
                    default=None)
    stuck = [op for op in remaining if first_ret is None or op.call <= first_ret]
    return KeyResult(key, False, ops, steps, best_prefix=best, stuck=stuck)


def check(ops, max_steps_per_key=2_000_000, initial=None):
    """Checks a whole history (an iterable of Operation): per key, from `initial` (None =
    every key absent at the start)."""
    by_key = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    results = {}
    for key, key_ops in sorted(by_key.items()):
        results[key] = check_key(key, key_ops, initial=initial, max_steps=max_steps_per_key)
    return Result(results)


class History:
    """A thread-safe recorder of operations for check()."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ops = []

    def invoke(self, client, key, kind, value=None):
        op = Operation(client=client, key=key, kind=kind, input=value,
                       call=time.monotonic_ns())
        with self._lock:
            self._ops.append(op)
        return op

    @staticmethod
    def complete(op, output):
        op.ret = time.monotonic_ns()
        op.output = output

    @staticmethod
    def unknown(op):
        op.ret = None
        op.output = UNKNOWN

    def add(self, op):
        with self._lock:
            self._ops.append(op)

    def ops(self):
        with self._lock:
            return list(self._ops)

    def keys(self):
        with self._lock:
            return sorted({op.key for op in self._ops})
