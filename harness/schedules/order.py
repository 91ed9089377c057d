"""Memory-aware operator ordering: the topological order of a graph's ops with
the lowest peak of live bytes.

TensorFlow Lite Micro runs ops in file order. In a graph with parallel
branches (UNIST's patch tunnels, ShuffleNet's two paths, a detector's heads)
the converter may interleave the branches, and every branch's tensors are
then live at once. Any topological order computes the same outputs; the live
bytes at each step depend only on which ops have run, not in what order. So
the lowest peak is a shortest path over the sets of ops already run (each a
"downset" of the graph): the cost of a path is its largest step.

The search goes level by level (one more op per level) and keeps, per set,
the lowest peak that reaches it. For chains and a few short branches the sets
are few and the search is exact. Beyond `BEAM_WIDTH` sets per level it keeps
the best ones (lowest peak so far, then fewest live bytes) and becomes a
heuristic; the result is then also compared with depth-first orders (each
branch run to its end before the next starts, only the joined result kept:
Sethi and Ullman's order for expression trees) and with the file order, and
the lowest wins.

The criterion is the sum of live tensor and scratch bytes (each rounded up to
the arena alignment), the arena's lower bound; the arena planner then places
the chosen order, and a schedule keeps it only when the placed arena shrinks.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from harness.frontend.graph import Block, Graph, Op
from harness.schedules.plan import ScratchFn, align, kernel_scratch

BEAM_WIDTH = 2000     # sets of run ops kept per level; the search is exact below it


@dataclass(frozen=True)
class OrderChoice:
    order: tuple[int, ...]       # op indices of `graph` in execution order
    peak_bytes: int              # live-bytes peak of `order`
    file_peak_bytes: int         # live-bytes peak of the file order
    exact: bool                  # no set of run ops was dropped: no order has a lower peak
    searched_sets: int           # sets of run ops the search visited

    @property
    def is_file_order(self) -> bool:
        return list(self.order) == sorted(self.order)


class _Costs:
    """The graph as bit masks: each op's producers and each tensor's readers,
    with RESHAPE outputs counted as their input's bytes (they share them)."""

    def __init__(self, graph: Graph, scratch: ScratchFn, streamed_input: bool = False):
        n = len(graph.ops)
        self.n = n
        producer = {t: op.index for op in graph.ops for t in op.outputs}
        alias: dict[int, int] = {}
        for op in graph.ops:
            if op.kind == "RESHAPE" and op.inputs and op.inputs[0] >= 0:
                src = op.inputs[0]
                alias[op.outputs[0]] = alias.get(src, src)

        def root(t: int) -> int:
            return alias.get(t, t)

        def arena_tensor(t: int) -> bool:
            return t >= 0 and not graph.tensors[t].is_const

        self.size: dict[int, int] = {}
        self.readers: dict[int, int] = {}          # root -> mask of ops that read it or an alias
        self.pred = [0] * n
        self.succ: list[list[int]] = [[] for _ in range(n)]
        self.reads: list[list[int]] = [[] for _ in range(n)]      # roots an op reads
        self.writes: list[list[int]] = [[] for _ in range(n)]     # roots an op creates
        for op in graph.ops:
            for t in op.inputs:
                if not arena_tensor(t):
                    continue
                r = root(t)
                self.readers[r] = self.readers.get(r, 0) | (1 << op.index)
                if r not in self.reads[op.index]:
                    self.reads[op.index].append(r)
                p = producer.get(t)
                if p is not None and not self.pred[op.index] >> p & 1:
                    self.pred[op.index] |= 1 << p
                    self.succ[p].append(op.index)
            for t in op.outputs:
                if arena_tensor(t) and root(t) == t:
                    self.writes[op.index].append(t)
                    self.size[t] = align(graph.tensors[t].nbytes)
        self.kept = {root(t) for t in graph.outputs}               # live to the end
        self.initial = [root(t) for t in graph.inputs if arena_tensor(t)]
        for t in self.initial:             # a streamed input is read from the host, never held
            self.size[t] = 0 if streamed_input else align(graph.tensors[t].nbytes)
        self.scratch = [0 if op.kind == "RESHAPE" else align(scratch(graph, op)) for op in graph.ops]

    def is_chain(self) -> bool:
        """Every op needs the one before it: the file order is the only order."""
        return all(self.pred[o] >> (o - 1) & 1 for o in range(1, self.n))

    def start(self) -> int:
        return sum(self.size[t] for t in set(self.initial))

    def step(self, done: int, live: int, o: int) -> tuple[int, int]:
        """Run op o after the ops in `done` with `live` bytes held: the bytes
        during o, and the bytes held after it."""
        created = sum(self.size[t] for t in self.writes[o])
        during = live + created + self.scratch[o]
        after_done = done | 1 << o
        freed = 0
        for t in self.writes[o] + self.reads[o]:
            if t not in self.kept and self.readers.get(t, 0) & ~after_done == 0:
                freed += self.size[t]
        return during, live + created - freed

    def peak_of(self, order) -> int:
        done, live = 0, self.start()
        peak = live
        for o in order:
            during, live = self.step(done, live, o)
            done |= 1 << o
            peak = max(peak, during)
        return peak


def live_peak(graph: Graph, order, scratch: ScratchFn = kernel_scratch, streamed_input: bool = False) -> int:
    """The live-bytes peak of running `graph`'s ops in `order` (op indices)."""
    return _Costs(graph, scratch, streamed_input).peak_of(order)


def _search(costs: _Costs, beam: int) -> tuple[tuple[int, ...], int, bool, int]:
    """Level-by-level shortest path over the sets of run ops (see the module
    docstring). Returns (order, peak, exact, sets visited)."""
    n = costs.n
    start_live = costs.start()
    ready0 = tuple(o for o in range(n) if costs.pred[o] == 0)
    # set -> (peak, live, ready ops); parents[set] = (previous set, op)
    level = {0: (start_live, start_live, ready0)}
    parents: dict[int, tuple[int, int]] = {}
    exact, visited = True, 1
    for _ in range(n):
        following: dict[int, tuple[int, int, tuple[int, ...]]] = {}
        for done, (peak, live, ready) in level.items():
            for o in ready:
                during, after = costs.step(done, live, o)
                new_peak = max(peak, during)
                new_done = done | 1 << o
                old = following.get(new_done)
                if old is not None and old[0] <= new_peak:
                    continue
                newly = tuple(q for q in costs.succ[o] if costs.pred[q] & ~new_done == 0)
                following[new_done] = (new_peak, after, tuple(sorted(set(ready) - {o} | set(newly))))
                parents[new_done] = (done, o)
        visited += len(following)
        if len(following) > beam:
            exact = False
            kept = sorted(following.items(), key=lambda kv: (kv[1][0], kv[1][1]))[:beam]
            following = dict(kept)
        level = following
    (full, (peak, _, _)), = level.items()
    order = []
    while full:
        full, o = parents[full]
        order.append(o)
    return tuple(reversed(order)), peak, exact, visited


def _depth_first(costs: _Costs, graph: Graph, heavier_first: bool) -> tuple[int, ...]:
    """A post-order from the outputs: an op runs right after the ops it needs,
    each input's ops as one run (the input needing more live bytes first when
    `heavier_first`, else in file order), so a branch ends before the next starts."""
    # Live bytes of the ops below each op if run alone (a rough Sethi-Ullman
    # number); the file order is a topological one, so one pass fills it.
    need = [0] * costs.n
    for o in range(costs.n):
        below = [need[p] for p in range(o) if costs.pred[o] >> p & 1]
        need[o] = max(below, default=0) + sum(costs.size[t] for t in costs.writes[o])

    order: list[int] = []
    placed: set[int] = set()
    producers = {t: op.index for op in graph.ops for t in op.outputs}
    sinks = [producers[t] for t in graph.outputs if t in producers]
    sinks += [o for o in range(costs.n) if not costs.succ[o] and o not in sinks]
    stack: list[tuple[int, bool]] = [(o, False) for o in reversed(sinks)]
    while stack:
        o, expanded = stack.pop()
        if o in placed:
            continue
        if expanded:
            placed.add(o)
            order.append(o)
            continue
        stack.append((o, True))
        preds = [p for p in range(costs.n) if costs.pred[o] >> p & 1 and p not in placed]
        if heavier_first:
            preds.sort(key=lambda p: (-need[p], p))
        for p in reversed(preds):              # the first in `preds` is popped, so run, first
            stack.append((p, False))
    return tuple(order)


def best_order(graph: Graph, scratch: ScratchFn = kernel_scratch, beam: int = BEAM_WIDTH,
               streamed_input: bool = False) -> OrderChoice:
    """The op order with the lowest live-bytes peak (ties: the file order);
    `streamed_input`: the graph input takes no arena bytes."""
    costs = _Costs(graph, scratch, streamed_input)
    file_order = tuple(range(costs.n))
    file_peak = costs.peak_of(file_order)
    if costs.is_chain():
        return OrderChoice(file_order, file_peak, file_peak, exact=True, searched_sets=costs.n + 1)
    order, peak, exact, visited = _search(costs, beam)
    candidates = [(peak, order)]
    if not exact:
        for heavier_first in (True, False):
            o = _depth_first(costs, graph, heavier_first)
            candidates.append((costs.peak_of(o), o))
    peak, order = min(candidates, key=lambda c: c[0])
    if peak >= file_peak:
        peak, order = file_peak, file_order
    return OrderChoice(order, peak, file_peak, exact=exact, searched_sets=visited)


_LAYER_BY_LAYER_BEST: dict[tuple, int] = {}


def best_layer_by_layer_arena(graph: Graph, stream_windows: bool = False) -> int:
    """The arena of layer by layer in the best op order (or the file order,
    when that is smaller): what a schedule must beat to gain anything on a
    graph with branches. The same for every order of one graph, so kept per
    graph (its file's digest and its set of ops)."""
    from harness.schedules.plan import plan_schedule
    key = (graph.digest or graph.name, frozenset(op.outputs[0] for op in graph.ops), stream_windows)
    if key not in _LAYER_BY_LAYER_BEST:
        from harness.schedules.stages import window_reads
        streamed = stream_windows and bool(window_reads(graph))
        choice = best_order(graph, streamed_input=streamed)
        arenas = [plan_schedule(graph, [], stream_windows=streamed).arena_bytes]
        if not choice.is_file_order:
            arenas.append(plan_schedule(in_order(graph, choice.order), [], stream_windows=streamed).arena_bytes)
        _LAYER_BY_LAYER_BEST[key] = min(arenas)
    return _LAYER_BY_LAYER_BEST[key]


def candidate_orders(graph: Graph, scratch: ScratchFn = kernel_scratch) -> list[tuple[str, tuple[int, ...]]]:
    """The orders worth planning a schedule in, file order first: for a graph
    with branches also the best layer-by-layer order and the branch-by-branch
    (depth-first) ones, which keep each branch's ops together for tiled stages."""
    costs = _Costs(graph, scratch)
    file_order = tuple(range(costs.n))
    if costs.is_chain():
        return [("file", file_order)]
    found = [("file", file_order), ("fewest live bytes", best_order(graph, scratch).order)]
    for heavier_first in (True, False):
        found.append(("branch by branch", _depth_first(costs, graph, heavier_first)))
    unique, seen = [], set()
    for name, order in found:
        if order not in seen:
            seen.add(order)
            unique.append((name, order))
    return unique


def stages_run_whole(graph: Graph, plan) -> bool:
    """Can each tiled stage of `plan` run as one unit at its first step? An op
    placed between a stage's first and last op must not make a tensor the
    stage reads, nor read one it makes (its inner maps never exist whole)."""
    for st in plan.stages:
        ops = set(st.ops)
        made = {t for i in ops for t in graph.ops[i].outputs}
        read = {t for i in ops for t in graph.ops[i].inputs}
        for i in range(min(ops), max(ops) + 1):
            if i in ops:
                continue
            if set(graph.ops[i].outputs) & read or set(graph.ops[i].inputs) & made:
                return False
    return True


def in_order(graph: Graph, order) -> Graph:
    """The graph with its ops in `order` (op indices), renumbered so that an
    op's index is its position again; each op keeps its file index."""
    order = list(order)
    if order == list(range(len(graph.ops))):
        return graph
    if sorted(order) != list(range(len(graph.ops))):
        raise ValueError("an op order must name every op once")
    new_index = {old: new for new, old in enumerate(order)}
    ops = [Op(index=new, kind=graph.ops[old].kind, inputs=list(graph.ops[old].inputs),
              outputs=list(graph.ops[old].outputs), options=dict(graph.ops[old].options),
              file_index=graph.ops[old].file_index) for new, old in enumerate(order)]

    def moved(i: Optional[int]) -> Optional[int]:
        return None if i is None else new_index[i]

    blocks = [Block(expand=moved(b.expand), depthwise=new_index[b.depthwise], project=new_index[b.project],
                    add=moved(b.add), pad=moved(b.pad), activations=[new_index[i] for i in b.activations],
                    se=[new_index[i] for i in b.se]) for b in graph.blocks]
    return replace(graph, ops=ops, blocks=sorted(blocks, key=lambda b: b.ops[0]))


def executed_graph(graph: Graph, plan) -> Graph:
    """The graph in the order `plan` runs it. `plan.op_order` names each op by
    its first output tensor (a tensor has one producer, and tensor indices do
    not change when ops move; empty: the file order). Idempotent: a graph
    already in that order is returned as it is."""
    if not plan.op_order:
        return graph
    current = [op.outputs[0] for op in graph.ops]
    if current == list(plan.op_order):
        return graph
    position = {t: k for k, t in enumerate(plan.op_order)}
    if sorted(position) != sorted(current):
        raise ValueError(f"plan {plan.variant} orders other ops than graph {graph.name} holds")
    return in_order(graph, sorted(range(len(graph.ops)), key=lambda i: position[graph.ops[i].outputs[0]]))


def order_key(graph: Graph) -> list[int]:
    """What a plan records as its op order: each op's first output tensor."""
    return [op.outputs[0] for op in graph.ops]
