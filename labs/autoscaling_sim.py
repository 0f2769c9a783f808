"""A replica simulator: KEDA and the Horizontal Pod Autoscaler scaling workers on queue depth.

This module is the code behind the page *Kubernetes autoscaling*
(``docs/frameworks/kubernetes-autoscaling.md``). It replays a load against a worker
Deployment scaled by a KEDA ``ScaledObject`` with the Redis list trigger, one simulated
second at a time, and implements the rules that decide the replica count:

* **KEDA** polls the list every ``pollingInterval`` seconds. It alone scales between 0 and
  1: up when the length exceeds ``activationListLength``, down to 0 once no poll has seen
  activity for ``cooldownPeriod`` seconds (only when ``minReplicaCount`` is 0).
* **The HPA** that KEDA creates runs every sync period (15 s) from 1 replica upwards. The
  list length is an external metric with an ``AverageValue`` target of ``listLength`` jobs
  per replica, so it asks for ``ceil(length / listLength)`` replicas unless
  ``length / (listLength · current)`` is within the tolerance (0.1) of 1.
  Scale-down takes the highest recommendation of the last 300 s (the stabilization
  window); scale-up is limited to doubling or +4 pods per period, whichever is more.

Simplifications: the queue is a single number, each ready replica finishes
``per_replica_rate`` jobs per second, a new replica is ready ``startup_seconds`` after it
is requested, and the HPA's recommendation history is cleared when KEDA scales to zero.

>>> # ratio 1.1: within the tolerance
>>> hpa_desired_replicas(current=4, metric_total=44, target_per_replica=10)
4
>>> # ratio 1.125: scale
>>> hpa_desired_replicas(current=4, metric_total=45, target_per_replica=10)
5
"""

# [start:imports]
from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
# [end:imports]


# [start:settings]
@dataclass(frozen=True)
class HpaSettings:
    """The HPA's defaults (Kubernetes 1.23+ ``autoscaling/v2``; see the page's sources)."""

    tolerance: float = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance
    sync_period: int = 15  # --horizontal-pod-autoscaler-sync-period, seconds
    scale_down_stabilization: int = 300  # behavior.scaleDown.stabilizationWindowSeconds
    scale_up_stabilization: int = 0  # behavior.scaleUp.stabilizationWindowSeconds
    scale_up_percent: int = 100  # scaleUp policy: +100 % per period ...
    scale_up_pods: int = 4  # ... or +4 pods per period, whichever is more (selectPolicy Max)


@dataclass(frozen=True)
class KedaSettings:
    """A ScaledObject with the ``redis`` (list) trigger; defaults are KEDA's (2.x)."""

    polling_interval: int = 30  # spec.pollingInterval
    cooldown_period: int = 300  # spec.cooldownPeriod
    min_replica_count: int = 0  # spec.minReplicaCount
    max_replica_count: int = 100  # spec.maxReplicaCount
    list_length: int = 5  # trigger metadata listLength: target jobs per replica
    activation_list_length: int = 0  # trigger metadata activationListLength


@dataclass(frozen=True)
class Workload:
    """How fast one replica works and how long a new one takes to become ready."""

    per_replica_rate: float  # jobs per second one replica finishes
    startup_seconds: int = 20


@dataclass
class Timeline:
    """One row per simulated second, plus what the autoscalers decided and when."""

    t: list[int] = field(default_factory=list)
    arrival_rate: list[float] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)
    served: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    busy_replicas_removed: int = 0  # replicas taken away while they still had work


def _check(name: str, value: float, *, minimum: float = 0, strict: bool = False) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")


# [end:settings]


# [start:hpa-formula]
def hpa_desired_replicas(
    current: int, metric_total: float, target_per_replica: float, tolerance: float = 0.1
) -> int:
    """The HPA's proposal for an external metric with an ``AverageValue`` target.

    ``usage ratio = metric_total / (target_per_replica · current)``; inside
    ``[1 − tolerance, 1 + tolerance]`` (bounds included) nothing changes, otherwise the
    proposal is ``ceil(metric_total / target_per_replica)`` (which equals
    ``ceil(current · ratio)``).
    """
    _check("current", current, minimum=1)
    _check("metric_total", metric_total)
    _check("target_per_replica", target_per_replica, strict=True)
    _check("tolerance", tolerance)
    ratio = metric_total / (target_per_replica * current)
    # Tolerances.isWithin in replica_calculator.go
    if 1.0 - tolerance <= ratio <= 1.0 + tolerance:
        return current
    return math.ceil(metric_total / target_per_replica)
# [end:hpa-formula]


# [start:simulate]
def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw by counting exponential gaps in one unit of time (exact, stdlib only)."""
    count, elapsed = 0, rng.expovariate(mean) if mean > 0 else math.inf
    while elapsed <= 1.0:
        count += 1
        elapsed += rng.expovariate(mean)
    return count


def load_spike(t: int) -> float:
    """The load the page replays: idle, a trickle, a 4-minute spike, a trickle, idle."""
    if t < 120:
        return 0.0
    if t < 300:
        return 3.0
    if t < 540:
        return 40.0
    if t < 900:
        return 3.0
    return 0.0


def simulate(
    arrival_rate: Callable[[int], float],
    workload: Workload,
    *,
    duration: int,
    keda: KedaSettings = KedaSettings(),
    hpa: HpaSettings = HpaSettings(),
    seed: int = 0,
) -> Timeline:
    """Replay ``duration`` seconds of Poisson arrivals at ``arrival_rate(t)`` jobs/s."""
    _check("duration", duration, minimum=1)
    _check("per_replica_rate", workload.per_replica_rate, strict=True)
    _check("startup_seconds", workload.startup_seconds)
    for name in ("polling_interval", "list_length"):
        _check(name, getattr(keda, name), strict=True)
    _check("sync_period", hpa.sync_period, strict=True)
    _check("tolerance", hpa.tolerance)
    if not 0 <= keda.min_replica_count <= keda.max_replica_count or keda.max_replica_count < 1:
        raise ValueError(
            f"need 0 <= minReplicaCount <= maxReplicaCount and maxReplicaCount >= 1, got {keda}"
        )
    rng = random.Random(seed)
    hpa_min = max(1, keda.min_replica_count)  # KEDA gives its HPA at least one replica
    pods: list[int] = []  # the time each replica becomes ready
    recommendations: list[tuple[int, int]] = []
    depth, credit, last_active = 0, 0.0, -math.inf
    out = Timeline()

    def scale_to(t: int, replicas: int) -> None:
        if replicas > len(pods):
            pods.extend([t + workload.startup_seconds] * (replicas - len(pods)))
        elif replicas < len(pods):
            pods.sort()  # the newest (least ready) replicas are removed first
            removed = pods[replicas:]
            del pods[replicas:]
            ready_removed = sum(1 for ready_at in removed if ready_at <= t)
            ready_before = ready_removed + sum(1 for ready_at in pods if ready_at <= t)
            busy = min(ready_before, math.ceil(served / workload.per_replica_rate))
            out.busy_replicas_removed += max(0, ready_removed - (ready_before - busy))

    for t in range(duration):
        rate = arrival_rate(t)
        _check(f"arrival_rate({t})", rate)
        arrivals = _poisson(rng, rate)
        depth += arrivals
        ready = sum(1 for ready_at in pods if ready_at <= t)
        credit += ready * workload.per_replica_rate
        served = min(depth, int(credit))
        depth -= served
        credit = credit - int(credit) if ready else 0.0  # keep only the fraction of a job

        if t % keda.polling_interval == 0:  # KEDA: activation, and 0 <-> 1
            if depth > keda.activation_list_length:
                last_active = t
                if not pods:
                    scale_to(t, hpa_min)
            elif (pods and keda.min_replica_count == 0
                  and t - last_active >= keda.cooldown_period):
                scale_to(t, 0)
                recommendations.clear()

        if pods and t % hpa.sync_period == 0:  # the HPA: 1 <-> N
            current = len(pods)
            proposal = hpa_desired_replicas(current, depth, keda.list_length, hpa.tolerance)
            proposal = min(max(proposal, hpa_min), keda.max_replica_count)
            recommendations.append((t, proposal))
            # stabilization: the window always includes the recommendation just made
            up_floor = min(
                r for s, r in recommendations if s > t - hpa.scale_up_stabilization or s == t
            )
            down_ceiling = max(
                r for s, r in recommendations if s > t - hpa.scale_down_stabilization or s == t
            )
            target = (up_floor if current < up_floor
                      else down_ceiling if current > down_ceiling
                      else current)
            step = max(current * hpa.scale_up_percent // 100, hpa.scale_up_pods)
            target = min(target, current + step)
            scale_to(t, target)

        out.t.append(t)
        out.arrival_rate.append(rate)
        out.arrivals.append(arrivals)
        out.served.append(served)
        out.depth.append(depth)
        out.replicas.append(len(pods))
        out.ready.append(sum(1 for ready_at in pods if ready_at <= t))
    return out
# [end:simulate]


# [start:scenario]
# The scenario the page draws: workers finishing 2 jobs/s each, a ScaledObject asking for
# one replica per 10 queued jobs, capped at 30 replicas; everything else at its default.
SPIKE_WORKLOAD = Workload(per_replica_rate=2.0, startup_seconds=20)
SPIKE_KEDA = KedaSettings(list_length=10, max_replica_count=30)
SPIKE_DURATION = 1500
SPIKE_SEED = 7


def replay_spike(keda: KedaSettings = SPIKE_KEDA, hpa: HpaSettings = HpaSettings()) -> Timeline:
    """The page's load spike, replayed with the given autoscaler settings."""
    return simulate(
        load_spike, SPIKE_WORKLOAD, duration=SPIKE_DURATION, keda=keda, hpa=hpa, seed=SPIKE_SEED
    )
# [end:scenario]
