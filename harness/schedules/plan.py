"""Memory plans: which bytes of one static arena each tensor occupies, step by step.

A `Plan` is plain data (steps, allocations, stages, notes) serialisable to
JSON: the code generator consumes it, `invoke plan` prints and plots it, and
the measured arena watermark is checked against `arena_bytes`.

`plan_schedule` is the arena planner every schedule ends in: tensor lifetimes
from the op order, the stages' own buffers (harness.schedules.stages), offsets
by a greedy first fit (largest first, as TFLite Micro's greedy planner does,
then a few other orders and a short local search), in-place chains.
`least_arena_plan` is the searches' common step: of many candidate stage
lists, the one with the smallest arena, placing only those whose lower
bound can still win.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from harness.frontend.graph import Graph, Op

# Offsets are multiples of this: 4 is what the C kernels need for word loads;
# 16 keeps every tensor on its own cache-line-friendly boundary.
ARENA_ALIGNMENT = 16


def align(n: int, a: int = ARENA_ALIGNMENT) -> int:
    return (n + a - 1) // a * a


@dataclass
class Allocation:
    """One buffer in the arena: a tensor, or the scratch of one step."""
    name: str
    size: int                     # bytes actually used
    first_step: int
    last_step: int
    tensor: Optional[int] = None  # tensor index; None for scratch buffers
    offset: int = -1

    def overlaps_in_time(self, other: "Allocation") -> bool:
        return self.first_step <= other.last_step and other.first_step <= self.last_step

    def overlaps_in_space(self, other: "Allocation") -> bool:
        return self.offset < other.offset + other.size and other.offset < self.offset + self.size


@dataclass
class Step:
    index: int
    op: int                      # op index in the graph
    kind: str
    input_shapes: list[list[int]]
    output_shape: list[int]
    live: list[str]              # allocation names live during this step
    live_bytes: int              # sum of their sizes
    scratch_bytes: int = 0
    macs: int = 0


@dataclass
class Note:
    """Something a planner wants the user to know about its plan: `kind` and
    `data` for programs and tests, `text` for people (`invoke plan` prints it)."""
    kind: str
    text: str
    data: dict = field(default_factory=dict)


@dataclass
class Plan:
    model: str
    variant: str
    alignment: int
    arena_bytes: int             # planned arena size (highest offset + size)
    lower_bound_bytes: int       # max over steps of the live bytes
    steps: list[Step]
    allocations: list[Allocation]
    # RESHAPE outputs share their input's bytes: output tensor -> input tensor.
    aliases: dict[int, int] = field(default_factory=dict)
    # Stages (harness.schedules.stages), empty for layer by layer.
    stages: list = field(default_factory=list)
    macs: int = 0                # MACs as scheduled (with any recomputation)
    base_macs: int = 0           # MACs of the layer-by-layer schedule
    notes: list[Note] = field(default_factory=list)   # what the planner wants the user to know
    options: dict = field(default_factory=dict)       # the schedule options it was made with
    # The order its steps run the ops in, each op named by its first output
    # tensor (harness.schedules.order); empty: the file order.
    op_order: list[int] = field(default_factory=list)

    def notes_of(self, kind: str) -> list[Note]:
        return [n for n in self.notes if n.kind == kind]

    @property
    def input_streamed(self) -> bool:
        """The graph input is read tile by tile from the host, never whole in the arena."""
        return any(st.streamed >= 0 for st in self.stages)

    def allocation_of(self, tensor: int) -> Allocation:
        tensor = self.aliases.get(tensor, tensor)
        for a in self.allocations:
            if a.tensor == tensor:
                return a
        raise KeyError(f"tensor {tensor} has no allocation")

    def scratch_of(self, step: int) -> Optional[Allocation]:
        for a in self.allocations:
            if a.tensor is None and a.first_step == step:
                return a
        return None

    def to_json(self) -> str:
        d = asdict(replace(self, stages=[]))
        d["stages"] = [st.to_dict() for st in self.stages]
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        d = json.loads(text)
        d["steps"] = [Step(**s) for s in d["steps"]]
        d["allocations"] = [Allocation(**a) for a in d["allocations"]]
        d["aliases"] = {int(k): v for k, v in d.get("aliases", {}).items()}
        from harness.schedules.stages import stage_from_dict
        d["stages"] = [stage_from_dict(st) for st in d.get("stages", [])]
        d["notes"] = [Note(**n) for n in d.get("notes", [])]
        return cls(**d)

    def stage_at(self, op_index: int):
        """The fused stage that contains op `op_index`, or None."""
        for st in self.stages:
            if op_index in st.ops:
                return st
        return None

    def stage_buffer(self, stage_index: int, tensor: Optional[int]) -> "Allocation":
        """A stage's tile buffer of `tensor` (None: the stage's scratch, 'acc': its
        MEAN accumulators)."""
        kind = "scratch" if tensor is None else "acc" if tensor == "acc" else f"t{tensor}"
        name = f"s{stage_index}.{kind}"
        for a in self.allocations:
            if a.name == name:
                return a
        raise KeyError(name)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json())


ScratchFn = Callable[[Graph, Op], int]


def no_scratch(graph: Graph, op: Op) -> int:
    return 0


def kernel_scratch(graph: Graph, op: Op) -> int:
    """Scratch bytes the runtime kernel of `op` asks for (its *_buffer_size())."""
    from harness.backend.lowering import lower_op
    if op.kind == "RESHAPE":
        return 0
    from harness.backend.hostrt import planned_kernels
    key = ("scratch", planned_kernels(), op.kind, tuple(op.inputs), tuple(op.outputs),
           repr(sorted(op.options.items())))
    if key not in graph.memo:        # lowering sizes the scratch through the C runtime: do it once
        graph.memo[key] = int(lower_op(graph, op).scratch_bytes)
    return graph.memo[key]


def lifetimes(graph: Graph, staged_ops: frozenset = frozenset()) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """First and last step of every arena tensor, and the aliases: a RESHAPE's
    output shares its input's bytes, and so does the output of an op whose
    kernel may write over its own input (lowering.IN_PLACE_OPS: a QUANTIZE of
    the uint8 or float32 pixels) when that input dies there and the op runs on
    whole tensors (not inside a tiled stage, `staged_ops`, whose input may be
    a tile buffer only)."""
    from harness.backend.lowering import IN_PLACE_OPS

    last_read: dict[int, int] = {}
    for op in graph.ops:
        for t in op.inputs:
            last_read[t] = op.index
    aliases: dict[int, int] = {}

    def root(t: int) -> int:
        return aliases.get(t, t)

    def dies_at(t: int, op) -> bool:
        """Does (root) tensor t have no reader after `op` and is it no graph output?"""
        group = [u for u in last_read if root(u) == root(t)] + [t]
        return all(last_read.get(u, -1) <= op.index for u in group) and \
            not any(root(o) == root(t) for o in graph.outputs)

    for op in graph.ops:
        src = op.inputs[0] if op.inputs else -1
        if op.kind == "RESHAPE":
            aliases[op.outputs[0]] = root(src)
        elif op.kind in IN_PLACE_OPS and op.index not in staged_ops and src >= 0 and \
                not graph.tensors[src].is_const and \
                graph.tensors[op.outputs[0]].nbytes <= graph.tensors[root(src)].nbytes and dies_at(src, op):
            aliases[op.outputs[0]] = root(src)
    life: dict[int, tuple[int, int]] = {}

    def touch(t: int, step: int) -> None:
        t = aliases.get(t, t)
        if t < 0 or graph.tensors[t].is_const:
            return
        first, last = life.get(t, (step, step))
        life[t] = (min(first, step), max(last, step))

    last_step = len(graph.ops) - 1
    for t in graph.inputs:
        touch(t, 0)
    for step, op in enumerate(graph.ops):
        for t in op.inputs + op.outputs:
            touch(t, step)
    for t in graph.outputs:
        touch(t, last_step)
    return life, aliases


Group = list[tuple[Allocation, int]]       # buffers at fixed offsets from each other
REPACK_ROUNDS = 16                         # local-search rounds after the greedy orders


def greedy_offsets(allocs: list[Allocation], alignment: int = ARENA_ALIGNMENT,
                   groups: Optional[list[Group]] = None) -> int:
    """Each buffer goes to the lowest aligned offset where it does not overlap a
    placed buffer that is live at the same time. Largest first (TFLite Micro's
    order), then in order of first use, by bytes x steps, by lifetime, by last
    use: the orders pack differently and the smallest arena wins. A group (an in-place chain) is
    placed as one unit: its members keep their relative offsets and each only
    avoids what is live with it. Returns the arena size."""
    items: list[Group] = [[(a, 0)] for a in allocs] + list(groups or [])

    def rep(item: Group) -> Allocation:           # what the orders sort a group by
        return Allocation(name=item[0][0].name, size=max(m.size for m, _ in item),
                          first_step=min(m.first_step for m, _ in item),
                          last_step=max(m.last_step for m, _ in item))

    reps = [rep(item) for item in items]
    orders = (lambda r: (-r.size, r.first_step, r.name), lambda r: (r.first_step, -r.size, r.name),
              lambda r: (-r.size * (r.last_step - r.first_step + 1), r.first_step, r.name),
              lambda r: (-(r.last_step - r.first_step), -r.size, r.name),
              lambda r: (-r.last_step, -r.size, r.name))
    members = [m for item in items for m, _ in item]
    neighbours = _time_neighbours(members)
    best = None
    for key in orders:
        order = [items[k] for k in sorted(range(len(items)), key=lambda k: key(reps[k]))]
        size = _place(order, alignment, neighbours)
        if best is None or size < best[0]:
            best = (size, [m.offset for m in members], order)
    # Then a short local search: a buffer that ends high is moved to the front
    # of the best order so far; kept when the arena shrinks.
    tried: set[int] = set()
    for _ in range(REPACK_ROUNDS):
        for m, offset in zip(members, best[1]):
            m.offset = offset
        candidates = [item for item in best[2] if id(item) not in tried]
        if not candidates:
            break
        top = max(candidates, key=lambda item: max(m.offset + m.size for m, _ in item))
        tried.add(id(top))
        order = [top] + [item for item in best[2] if item is not top]
        size = _place(order, alignment, neighbours)
        if size < best[0]:
            best = (size, [m.offset for m in members], order)
            tried = {id(top)}
    for m, offset in zip(members, best[1]):
        m.offset = offset
    return best[0]


def _time_neighbours(members: list[Allocation]) -> dict[int, list[Allocation]]:
    """For each buffer (by id), the others live at some same step. Time does not
    change with placement, so the greedy orders and the local search share this
    and each placement looks only at its neighbours, not at every placed buffer."""
    spans = sorted(members, key=lambda m: m.first_step)
    neighbours: dict[int, list[Allocation]] = {id(m): [] for m in members}
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            if b.first_step > a.last_step:
                break
            neighbours[id(a)].append(b)
            neighbours[id(b)].append(a)
    return neighbours


def _place(order: list[Group], alignment: int, neighbours: Optional[dict[int, list[Allocation]]] = None) -> int:
    if neighbours is None:
        neighbours = _time_neighbours([m for item in order for m, _ in item])
    placed: set[int] = set()
    for item in order:
        low = -min(rel for _, rel in item)
        if len(item) == 1:
            # One buffer: first fit by one sweep over its placed neighbours'
            # spans in address order (the same lowest start the search below finds).
            m, rel = item[0]
            position = low + rel
            if m.size:
                spans = sorted((p.offset, p.offset + p.size) for p in neighbours[id(m)]
                               if id(p) in placed and p.size)
                for lo, hi in spans:
                    if lo >= position + m.size:
                        break
                    if hi > position:
                        position = align(hi, alignment)
            m.offset = position
            placed.add(id(m))
            continue
        # A group: the lowest start x among the candidates (low, and each placed
        # neighbour's aligned end less the member's offset in the group) where no
        # member overlaps a placed neighbour. Member m at x + rel clashes with p
        # when x lies in the open interval (p.offset - rel - m.size, p.end - rel);
        # with the intervals sorted by their start and the candidates ascending,
        # x clashes when the largest end of the intervals begun before it exceeds it.
        starts = {low}
        forbidden = []
        for m, rel in item:
            for p in neighbours[id(m)]:
                if id(p) in placed:
                    starts.add(align(p.offset + p.size, alignment) - rel)
                    if m.size and p.size:
                        forbidden.append((p.offset - rel - m.size, p.offset + p.size - rel))
        forbidden.sort()
        reach, k, x = None, 0, low
        for x in sorted(v for v in starts if v >= low):
            while k < len(forbidden) and forbidden[k][0] < x:
                reach = forbidden[k][1] if reach is None else max(reach, forbidden[k][1])
                k += 1
            if reach is None or reach <= x:
                break
        for m, rel in item:
            m.offset = x + rel
        placed.update(id(m) for m, _ in item)
    return max((m.offset + m.size for item in order for m, _ in item), default=0)


def plan_schedule(graph: Graph, stages: list, scratch: ScratchFn = kernel_scratch,
                  variant: str = "unfused", stream_windows: bool = False) -> Plan:
    """Arena plan for ops run layer by layer except the fused `stages`.

    A fused stage occupies its steps as one unit: its whole inputs and output
    live through all of them, its inner tensors exist only as tile buffers, and
    its kernels share one scratch buffer. With `stream_windows`, an input that
    only slices read (UNIST's patches) is read from the host one window per
    slice (stages.WindowRead) and never held whole."""
    return layout_schedule(graph, stages, scratch, variant, stream_windows).place()


def least_arena_plan(graph: Graph, candidates: list[list], tiebreak: Callable[[Plan, list], tuple] = lambda p, s: (),
                     variant: str = "unfused", stream_windows: bool = False) -> Optional[tuple[tuple, Plan, int]]:
    """The candidate (a list of stages) whose plan has the smallest arena; ties
    go to the smallest `tiebreak(plan, stages)`, then to the earliest candidate.
    Returns (key, plan, candidate index), None for no candidates.

    The buffers live at one step never fit in less than their sum
    (`ScheduleLayout.lower_bound_bytes`), which is cheap and nearly always
    within a few bytes of the placed arena: candidates are placed in the order
    of that bound, and the search stops at the first bound above the best
    arena placed so far. The answer is the exhaustive search's."""
    layouts = sorted(((layout_schedule(graph, stages, variant=variant, stream_windows=stream_windows), k)
                      for k, stages in enumerate(candidates)), key=lambda item: (item[0].lower_bound_bytes, item[1]))
    best = None
    for layout, k in layouts:
        if best is not None and layout.lower_bound_bytes > best[0][0]:
            break
        plan = layout.place()
        key = (plan.arena_bytes, *tiebreak(plan, candidates[k]), k)
        if best is None or key < best[0]:
            best = (key, plan, k)
    return best


@dataclass
class ScheduleLayout:
    """A schedule's buffers and lifetimes before they get offsets: `place`
    gives the plan. `lower_bound_bytes` is no arena's size can be below: the
    largest sum of the buffers live at one step (the members of an in-place
    chain, which overlap by design, count as the largest of them)."""
    graph: Graph
    stages: list
    variant: str
    allocs: list[Allocation]
    aliases: dict[int, int]
    chains: dict[str, list]
    members: set[str]
    stage_of: dict[int, int]
    scratch_sizes: dict[int, int]
    lower_bound_bytes: int = 0

    def __post_init__(self):
        steps = len(self.graph.ops)
        change = [0] * (steps + 1)
        chain_peak = [0] * steps
        for a in self.allocs:
            if a.name in self.members:
                for step in range(a.first_step, a.last_step + 1):
                    chain_peak[step] = max(chain_peak[step], a.size)
            else:
                change[a.first_step] += a.size
                change[a.last_step + 1] -= a.size
        live, bound = 0, 0
        for step in range(steps):
            live += change[step]
            bound = max(bound, live + chain_peak[step])
        self.lower_bound_bytes = bound

    def place(self) -> Plan:
        graph, stages, allocs, members = self.graph, self.stages, self.allocs, self.members
        arena = greedy_offsets([a for a in allocs if a.name not in members], groups=list(self.chains.values()))
        stage_of = self.stage_of
        stage_macs = {i: 0 for i in stage_of}
        for st in stages:
            stage_macs[st.ops[0]] = st.macs      # a stage's MACs are booked on its first step
        steps = []
        for step, op in enumerate(graph.ops):
            live = [a for a in allocs if a.first_step <= step <= a.last_step]
            overlaid = _shared_bytes([a for a in live if a.name in members])
            k = stage_of.get(op.index)
            steps.append(Step(
                index=step, op=op.index, kind=op.kind if k is None else f"{op.kind}@s{k}",
                input_shapes=[list(graph.tensors[t].shape) for t in op.inputs
                              if t >= 0 and not graph.tensors[t].is_const],
                output_shape=list(graph.tensors[op.outputs[0]].shape),
                live=[a.name for a in live], live_bytes=sum(a.size for a in live) - overlaid,
                scratch_bytes=(self.scratch_sizes.get(step, 0) if k is None else stages[k].scratch_bytes),
                macs=graph.macs(op) if k is None else stage_macs[op.index]))
        base = sum(graph.macs(op) for op in graph.ops)
        return Plan(model=graph.name, variant=self.variant, alignment=ARENA_ALIGNMENT,
                    arena_bytes=arena, lower_bound_bytes=max((s.live_bytes for s in steps), default=0),
                    steps=steps, allocations=allocs, aliases=self.aliases, stages=list(stages),
                    macs=sum(s.macs for s in steps), base_macs=base)


def layout_schedule(graph: Graph, stages: list, scratch: ScratchFn = kernel_scratch,
                    variant: str = "unfused", stream_windows: bool = False) -> ScheduleLayout:
    """The buffers of `plan_schedule`'s plan, not yet placed."""
    if stream_windows:
        from harness.schedules.stages import window_reads
        stages = list(stages) + window_reads(graph, frozenset(i for st in stages for i in st.ops))
    life, aliases = lifetimes(graph, frozenset(i for st in stages for i in st.ops))
    for st in stages:                     # a streamed input never sits in the arena
        if st.streamed >= 0:
            life.pop(aliases.get(st.streamed, st.streamed), None)
    stage_of = {i: k for k, st in enumerate(stages) for i in st.ops}
    inner = {t for st in stages for t in st.inner}
    for st in stages:
        lo, hi = st.ops[0], st.ops[-1]
        for t in st.inputs + st.outputs:
            t = aliases.get(t, t)
            first, last = life[t]
            life[t] = (min(first, lo), max(last, hi))
    step_of_op = {op.index: step for step, op in enumerate(graph.ops)}
    allocs = [Allocation(name=f"t{t}", tensor=t, size=graph.tensors[t].nbytes,
                         first_step=first, last_step=last)
              for t, (first, last) in sorted(life.items()) if t not in inner]
    for k, st in enumerate(stages):
        lo, hi = step_of_op[st.ops[0]], step_of_op[st.ops[-1]]
        for suffix, size in st.arena_buffers():
            allocs.append(Allocation(name=f"s{k}.{suffix}", size=size, first_step=lo, last_step=hi))
    scratch_sizes = {}
    for step, op in enumerate(graph.ops):
        if op.index in stage_of:
            continue
        size = scratch(graph, op)
        if size > 0:
            scratch_sizes[step] = size
            allocs.append(Allocation(name=f"scratch{step}", size=size, first_step=step, last_step=step))
    # In-place stages: the output overlays an input that dies in the stage,
    # starting `lead` bytes before it. Chains (an overlaid output overlaid in
    # turn) share one region: it is placed once, spanning their bytes and steps,
    # and every member pinned inside it.
    by_tensor = {a.tensor: a for a in allocs if a.tensor is not None}
    host_of = {}
    for st in stages:
        if st.inplace:
            t_in, lead = st.inplace
            host_of[by_tensor[aliases.get(st.output, st.output)].name] = (
                by_tensor[aliases.get(t_in, t_in)], lead)
    chains: dict[str, list] = {}              # root name -> [(member, offset relative to root)]
    for a in allocs:
        rel, root = 0, a
        while root.name in host_of:
            host, lead = host_of[root.name]
            rel -= lead
            root = host
        if root is not a or a.name in {h.name for h, _ in host_of.values()}:
            chains.setdefault(root.name, []).append((a, rel))
    members = {m.name for chain in chains.values() for m, _ in chain}
    return ScheduleLayout(graph=graph, stages=list(stages), variant=variant, allocs=allocs, aliases=aliases,
                          chains=chains, members=members, stage_of=stage_of, scratch_sizes=scratch_sizes)


def _shared_bytes(allocs: list[Allocation]) -> int:
    """Bytes counted more than once when these buffers are summed (they overlap)."""
    total = sum(a.size for a in allocs)
    spans = sorted((a.offset, a.offset + a.size) for a in allocs)
    covered, reach = 0, None
    for lo, hi in spans:
        if reach is None or lo >= reach:
            covered += hi - lo
            reach = hi
        elif hi > reach:
            covered += hi - reach
            reach = hi
    return total - covered


def check_plan(plan: Plan) -> list[str]:
    """Invariant violations (empty when the plan is sound)."""
    problems = []
    allocs = plan.allocations
    for a in allocs:
        if a.offset % plan.alignment:
            problems.append(f"{a.name} offset {a.offset} is not {plan.alignment}-byte aligned")
        if a.offset < 0 or a.offset + a.size > plan.arena_bytes:
            problems.append(f"{a.name} [{a.offset}, {a.offset + a.size}) outside the arena")
    pairs = {frozenset((f"t{plan.aliases.get(st.inplace[0], st.inplace[0])}",
                        f"t{plan.aliases.get(st.output, st.output)}")) for st in plan.stages if st.inplace}
    for i, a in enumerate(allocs):
        for b in allocs[i + 1:]:
            if frozenset((a.name, b.name)) in pairs:
                continue            # an in-place stage's output over its dying input, by design
            if a.overlaps_in_time(b) and a.overlaps_in_space(b) and a.size and b.size:
                problems.append(f"{a.name} and {b.name} are live together and overlap")
    return problems
