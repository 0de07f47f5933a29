"""Nodes, pods, first-fit scheduling, quotas and the cluster autoscaler of one pool.

The step loop (`run.py`) asks a `PoolState` to place pending pods, to grow for
pods that do not fit and to shrink when a node has been unneeded long enough.
Pods are small mutable records owned by their pool; nothing here allocates per
step unless pods or nodes change.
"""

from __future__ import annotations

from mcpdsl.ir.quotas import Amounts
from mcpdsl.simulate.model import (
    NODE_SCALE_DOWN_UTIL,
    NODE_UNNEEDED_S,
    PROVISION_S,
    PoolSpec,
)

SERVICE, JOB, BALLOON = 0, 1, 2


class Pod:
    __slots__ = ("cpu", "end_at", "gpu", "kind", "memory", "namespace", "node", "owner",
                 "priority", "ready_at", "seq", "unschedulable")  # fmt: skip

    def __init__(self, kind: int, owner: int, cpu: int, memory: int, gpu: int,
                 namespace: str, priority: int, seq: int) -> None:  # fmt: skip
        self.kind, self.owner = kind, owner
        self.cpu, self.memory, self.gpu = cpu, memory, gpu
        self.namespace, self.priority, self.seq = namespace, priority, seq
        self.node: Node | None = None
        self.ready_at = 0.0
        self.end_at = 0.0
        #: A scheduling pass found no node for it: only such pods make the cluster
        #: autoscaler add nodes (a pod created after this step's pass waits for the next).
        self.unschedulable = False


class Node:
    __slots__ = ("free_cpu", "free_gpu", "free_memory", "pods", "ready_at", "unneeded_since")

    def __init__(self, spec: PoolSpec, ready_at: float) -> None:
        self.free_cpu, self.free_memory, self.free_gpu = spec.cpu, spec.memory, spec.gpu
        self.ready_at = ready_at
        self.pods: list[Pod] = []
        self.unneeded_since: float | None = None

    def fits(self, pod: Pod) -> bool:
        return (
            pod.cpu <= self.free_cpu and pod.memory <= self.free_memory and pod.gpu <= self.free_gpu
        )

    def put(self, pod: Pod) -> None:
        self.free_cpu -= pod.cpu
        self.free_memory -= pod.memory
        self.free_gpu -= pod.gpu
        self.pods.append(pod)
        pod.node = self

    def take(self, pod: Pod) -> None:
        self.free_cpu += pod.cpu
        self.free_memory += pod.memory
        self.free_gpu += pod.gpu
        self.pods.remove(pod)
        pod.node = None


class PoolState:
    """One pool's nodes, its pending pods and the quota use of each namespace in it."""

    def __init__(self, spec: PoolSpec, quotas: dict[str, Amounts]) -> None:
        self.spec = spec
        self.nodes: list[Node] = []
        self.pending: list[Pod] = []
        self.quotas = quotas  # namespace -> hard caps
        self.used: dict[str, list[int]] = {ns: [0, 0, 0] for ns in quotas}
        self.dirty = False
        self.req_cpu = 0  # millicores requested by the placed pods (balloons excluded)
        self.blocked_quota = 0  # steps with a pod held back by a quota
        self.blocked_capacity = 0  # steps with a pod that no node can take
        #: When the next provisioning node becomes ready: scheduling must look again then
        #: (a pod waiting for that node would otherwise wait for an unrelated change
        #: while the autoscaler, not seeing the node as provisioning any more, adds
        #: another one for it: nodes piled up to the maximum, one per `PROVISION_S`).
        self.next_node_ready = float("inf")

    # -------------------------------------------------------------- quotas
    def quota_allows(self, pod: Pod) -> bool:
        hard = self.quotas.get(pod.namespace)
        if hard is None or pod.kind == BALLOON:
            return True
        used = self.used[pod.namespace]
        for i, (want, cap) in enumerate(
            ((pod.cpu, hard.cpu), (pod.memory, hard.memory), (pod.gpu, hard.gpu))
        ):
            if cap is not None and used[i] + want > cap:
                return False
        return True

    def _count(self, pod: Pod, sign: int) -> None:
        used = self.used.get(pod.namespace)
        if used is not None and pod.kind != BALLOON:
            used[0] += sign * pod.cpu
            used[1] += sign * pod.memory
            used[2] += sign * pod.gpu

    # -------------------------------------------------------------- pods
    def add_pending(self, pod: Pod) -> None:
        self.pending.append(pod)
        self.dirty = True

    def remove(self, pod: Pod) -> None:
        """A pod deleted (scale-down, job done): frees its node and its quota."""
        if pod.node is not None:
            pod.node.take(pod)
            self._count(pod, -1)
            if pod.kind != BALLOON:
                self.req_cpu -= pod.cpu
        else:
            self.pending.remove(pod)
        self.dirty = True

    def place(self, pod: Pod, node: Node) -> None:
        node.put(pod)
        self._count(pod, +1)
        if pod.kind != BALLOON:
            self.req_cpu += pod.cpu

    def schedule(self, now: float, on_placed: object) -> None:
        """First fit by priority (then age) onto ready nodes; balloons are preempted."""
        if now >= self.next_node_ready:
            self.dirty = True
            self.next_node_ready = min(
                (n.ready_at for n in self.nodes if n.ready_at > now), default=float("inf")
            )
        if not self.pending or not self.dirty:
            return
        self.dirty = False
        self.pending.sort(key=lambda p: (-p.priority, p.seq))
        left: list[Pod] = []
        ready = [n for n in self.nodes if n.ready_at <= now]
        for pod in self.pending:
            if pod.kind != BALLOON and not self.quota_allows(pod):
                left.append(pod)
                continue
            node = next((n for n in ready if n.fits(pod)), None)
            if node is None and pod.kind != BALLOON:
                node = self._preempt(ready, pod, left)
            if node is None:
                left.append(pod)
                continue
            self.place(pod, node)
            on_placed(pod, now)  # type: ignore[operator]
        # Balloons evicted in this pass are recreated at once by their Deployment and
        # scheduled like any pod: onto room another node has, before the autoscaler
        # is asked for a node (waiting for an unrelated change added needless nodes).
        self.pending = []
        for pod in left:
            if pod.kind == BALLOON and pod.node is None:
                node = next((n for n in ready if n.fits(pod)), None)
                if node is not None:
                    self.place(pod, node)
                    continue
            pod.unschedulable = True
            self.pending.append(pod)

    def _preempt(self, ready: list[Node], pod: Pod, left: list[Pod]) -> Node | None:
        for node in ready:
            balloons = [p for p in node.pods if p.kind == BALLOON]
            if not balloons:
                continue
            cpu = node.free_cpu + sum(b.cpu for b in balloons)
            mem = node.free_memory + sum(b.memory for b in balloons)
            gpu = node.free_gpu + sum(b.gpu for b in balloons)
            if pod.cpu <= cpu and pod.memory <= mem and pod.gpu <= gpu:
                for b in balloons:
                    if node.fits(pod):
                        break
                    node.take(b)
                    left.append(b)
                return node
        return None

    # -------------------------------------------------------------- autoscaler
    def autoscale_up(self, now: float) -> None:
        """Nodes for the pending pods that fit nowhere, up to `max_nodes` (never for quota)."""
        waiting = [p for p in self.pending if p.kind == BALLOON or self.quota_allows(p)]
        if len(waiting) < len(self.pending):
            self.blocked_quota += 1
        waiting = [p for p in waiting if p.unschedulable]
        if not waiting:
            return
        spec = self.spec
        bins = [[n.free_cpu, n.free_memory, n.free_gpu] for n in self.nodes if n.ready_at > now]
        new = 0
        too_big = False
        for pod in waiting:
            if pod.cpu > spec.cpu or pod.memory > spec.memory or pod.gpu > spec.gpu:
                too_big = True
                continue
            for b in bins:
                if pod.cpu <= b[0] and pod.memory <= b[1] and pod.gpu <= b[2]:
                    b[0] -= pod.cpu
                    b[1] -= pod.memory
                    b[2] -= pod.gpu
                    break
            else:
                bins.append([spec.cpu - pod.cpu, spec.memory - pod.memory, spec.gpu - pod.gpu])
                new += 1
        room = spec.max_nodes - len(self.nodes)
        if too_big or (new > room and any(p.kind != BALLOON for p in waiting)):
            self.blocked_capacity += 1
        for _ in range(min(new, room)):
            self.nodes.append(Node(spec, now + PROVISION_S))
            self.next_node_ready = min(self.next_node_ready, now + PROVISION_S)

    def autoscale_down(self, now: float, on_moved: object) -> None:
        """Remove the least-requested ready node once unneeded for `NODE_UNNEEDED_S`."""
        spec = self.spec
        if len(self.nodes) <= spec.min_nodes or self.pending:
            for n in self.nodes:
                n.unneeded_since = None
            return
        ready = [n for n in self.nodes if n.ready_at <= now]
        if len(ready) < len(self.nodes):
            return

        def used(n: Node) -> float:
            shares = [(spec.cpu - n.free_cpu) / spec.cpu if spec.cpu else 0.0]
            if spec.memory:
                shares.append((spec.memory - n.free_memory) / spec.memory)
            if spec.gpu:
                shares.append((spec.gpu - n.free_gpu) / spec.gpu)
            return max(shares)

        candidate = min(ready, key=lambda n: (used(n), -self.nodes.index(n)))
        for n in ready:
            if n is not candidate:
                n.unneeded_since = None
        if used(candidate) >= NODE_SCALE_DOWN_UTIL:
            candidate.unneeded_since = None
            return
        others = [n for n in ready if n is not candidate]
        bins = [[n.free_cpu, n.free_memory, n.free_gpu] for n in others]
        moves: list[tuple[Pod, Node]] = []
        for pod in sorted(candidate.pods, key=lambda p: (-p.priority, p.seq)):
            for b, target in zip(bins, others, strict=True):
                if pod.cpu <= b[0] and pod.memory <= b[1] and pod.gpu <= b[2]:
                    b[0] -= pod.cpu
                    b[1] -= pod.memory
                    b[2] -= pod.gpu
                    moves.append((pod, target))
                    break
            else:
                candidate.unneeded_since = None
                return
        if candidate.unneeded_since is None:
            candidate.unneeded_since = now
            return
        if now - candidate.unneeded_since < NODE_UNNEEDED_S:
            return
        for pod, target in moves:  # drained: its pods restart on the other nodes
            candidate.take(pod)
            target.put(pod)
            on_moved(pod, now)  # type: ignore[operator]
        self.nodes.remove(candidate)
        self.dirty = True
