"""A fair rotation of supervision visits, as a pure function (no database).

Design: first each cell's visit months are spread evenly over the period (a cell visited four times
a year is visited once a quarter; cells are staggered so the months carry similar loads); each
visit's date is the cell's meeting in that month. Then visits are given to members by a min-cost
flow: source → visit → (member, ISO week) → member → sink. A (member, week) node has capacity 1,
so nobody has two visits in one week; every member takes floor(V/P) visits and the V mod P extra
ones go to any members (an "extra" node of that capacity), so the counts differ by at most one.
Edges to a member's own cell cost 1000, so a cell is visited by one of its own members only when
no fair plan avoids it; a small rotation cost spreads members over cells and months. The result is
deterministic for the same inputs. Visits the flow cannot place (more visits in one week than
members) are returned as unassigned rather than breaking a constraint.
"""
from __future__ import annotations

import calendar
import datetime as dt
from collections import deque
from dataclasses import dataclass, field

OWN_CELL_COST = 1000


@dataclass(frozen=True)
class Visit:
    """One planned visit: a cell's meeting in a month."""

    cell: str
    year: int
    month: int
    planned_on: dt.date


@dataclass(frozen=True)
class Assignment:
    """A visit given to a member."""

    cell: str
    member: str
    year: int
    month: int
    planned_on: dt.date


@dataclass
class RotationPlan:
    """The assignments, and the visits no fair assignment could place."""

    assignments: list[Assignment] = field(default_factory=list)
    unassigned: list[Visit] = field(default_factory=list)


def visit_months(cell_index: int, months: list[tuple[int, int]], frequency: int) -> list[tuple[int, int]]:
    """The months a cell is visited: `frequency` of them, evenly spaced, staggered by the cell's index."""
    count = len(months)
    frequency = max(0, min(frequency, count))
    if frequency == 0:
        return []
    step = count / frequency
    offset = cell_index % max(1, int(step))
    return [months[min(count - 1, int(k * step) + offset)] for k in range(frequency)]


def meeting_day(year: int, month: int, day: int) -> dt.date:
    """The cell's fixed meeting day in a month (the last day when the month is shorter)."""
    return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))


def planned_visits(cells: list[str], months: list[tuple[int, int]], frequency: int,
                   meeting_dates: dict[tuple[str, int, int], dt.date] | None = None,
                   meeting_days: dict[str, int] | None = None) -> list[Visit]:
    """Every visit of the period: each cell at `frequency` months, on its meeting date that month."""
    meeting_dates = meeting_dates or {}
    meeting_days = meeting_days or {}
    visits = []
    for index, cell in enumerate(cells):
        for year, month in visit_months(index, months, frequency):
            day = meeting_dates.get((cell, year, month)) or meeting_day(year, month, meeting_days.get(cell, 5))
            visits.append(Visit(cell, year, month, day))
    return sorted(visits, key=lambda v: (v.planned_on, cells.index(v.cell)))


class _Flow:
    """A small min-cost max-flow (successive shortest paths with SPFA); integer capacities and costs."""

    def __init__(self) -> None:
        self.graph: list[list[int]] = []
        self.to: list[int] = []
        self.cap: list[int] = []
        self.cost: list[int] = []

    def node(self) -> int:
        """Add a node; return its index."""
        self.graph.append([])
        return len(self.graph) - 1

    def edge(self, a: int, b: int, cap: int, cost: int = 0) -> int:
        """Add an edge (and its residual twin); return the edge's index."""
        for u, v, c, w in ((a, b, cap, cost), (b, a, 0, -cost)):
            self.graph[u].append(len(self.to))
            self.to.append(v)
            self.cap.append(c)
            self.cost.append(w)
        return len(self.to) - 2

    def run(self, source: int, sink: int) -> int:
        """Push as much flow as possible at the least cost; return the flow."""
        flow = 0
        n = len(self.graph)
        while True:
            dist = [None] * n
            dist[source] = 0
            back = [-1] * n
            queued = [False] * n
            queue = deque([source])
            while queue:
                u = queue.popleft()
                queued[u] = False
                for e in self.graph[u]:
                    if self.cap[e] > 0:
                        v = self.to[e]
                        d = dist[u] + self.cost[e]
                        if dist[v] is None or d < dist[v]:
                            dist[v] = d
                            back[v] = e
                            if not queued[v]:
                                queued[v] = True
                                queue.append(v)
            if dist[sink] is None:
                return flow
            v = sink
            while v != source:  # every path carries one unit here (visit edges have capacity 1)
                e = back[v]
                self.cap[e] -= 1
                self.cap[e ^ 1] += 1
                v = self.to[e ^ 1]
            flow += 1


def assign_visits(visits: list[Visit], members: list[str], own_cells: dict[str, str] | None = None) -> RotationPlan:
    """Give each visit to a member: counts within one of each other, one visit per member per ISO
    week, members' own cells avoided where a fair plan allows."""
    own_cells = own_cells or {}
    plan = RotationPlan()
    if not members:
        plan.unassigned = list(visits)
        return plan
    flow = _Flow()
    source, sink, extra = flow.node(), flow.node(), flow.node()
    count = len(visits)
    base, spare = divmod(count, len(members))
    member_nodes = {}
    for m in members:
        member_nodes[m] = flow.node()
        flow.edge(member_nodes[m], sink, base)
        if spare:
            flow.edge(member_nodes[m], extra, 1)
    if spare:
        flow.edge(extra, sink, spare)
    week_nodes: dict[tuple[str, tuple[int, int]], int] = {}
    choice_edges: list[list[tuple[int, str]]] = []
    for index, visit in enumerate(visits):
        v_node = flow.node()
        flow.edge(source, v_node, 1)
        week = visit.planned_on.isocalendar()[:2]
        edges = []
        for position, m in enumerate(members):
            key = (m, week)
            if key not in week_nodes:
                week_nodes[key] = flow.node()
                flow.edge(week_nodes[key], member_nodes[m], 1)
            cost = (OWN_CELL_COST if own_cells.get(m) == visit.cell else 0) + (position - index) % len(members)
            edges.append((flow.edge(v_node, week_nodes[key], 1, cost), m))
        choice_edges.append(edges)
    flow.run(source, sink)
    for visit, edges in zip(visits, choice_edges):
        chosen = next((m for e, m in edges if flow.cap[e] == 0), None)
        if chosen is None:
            plan.unassigned.append(visit)
        else:
            plan.assignments.append(Assignment(visit.cell, chosen, visit.year, visit.month, visit.planned_on))
    return plan


def rotation_plan(cells: list[str], members: list[str], months: list[tuple[int, int]], frequency: int,
                  own_cells: dict[str, str] | None = None,
                  meeting_dates: dict[tuple[str, int, int], dt.date] | None = None,
                  meeting_days: dict[str, int] | None = None) -> RotationPlan:
    """The whole automatic plan: spread each cell's visits, then assign them fairly (pure, deterministic)."""
    visits = planned_visits(cells, months, frequency, meeting_dates, meeting_days)
    return assign_visits(visits, members, own_cells)


def year_months(year: int) -> list[tuple[int, int]]:
    """The twelve (year, month) pairs of a year."""
    return [(year, m) for m in range(1, 13)]
