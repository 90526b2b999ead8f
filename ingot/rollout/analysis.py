"""A/B analysis that stays valid however often it looks: the decision rules of a rollout.

Accuracy is compared with the mixture sequential probability ratio test (mSPRT) on the
difference of two proportions, with a normal mixing distribution N(0, tau^2) over the effect,
and its always-valid confidence interval (Johari, Pekelis, Walsh, "Always Valid Inference:
Continuous Monitoring of A/B Tests", Operations Research 2022). With the difference estimate
d = p_challenger - p_champion and its variance V = p1(1-p1)/n1 + p2(1-p2)/n2:

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))
    interval = d -+ sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) - log(V / (V + tau^2))))

The always-valid p-value is min over looks of 1/Lambda, and the intersection of the intervals
over looks is still a (1 - alpha) interval: `SequentialAnalysis` keeps both between looks.

Decisions: roll back when the interval lies entirely below 0; promote when its lower end is
above -margin (the challenger is not worse by more than the margin) and nothing holds the
promotion; otherwise continue. Guardrails on all requests (error rate with the same test plus
an absolute cap, p99 latency ratio) roll back. Health checks (sample-ratio mismatch, unbalanced
label arrival) only hold a promotion, never roll back: they say the comparison may be biased,
not that the challenger is worse.

The formulas are written with numpy so the same functions serve one look (floats) and the
seeded simulations in the tests and benchmarks (arrays of looks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from ingot.errors import ConfigError

Decision = Literal["promote", "rollback", "continue", "inconclusive"]
DECISIONS: tuple[str, ...] = ("promote", "rollback", "continue", "inconclusive")


@dataclass(frozen=True)
class ArmCounts:
    """What one arm (champion or challenger) has seen inside the rollout's experiment.

    `total` and `correct` are labelled evidence rows (feedback joined to the row this arm served).
    `requests` and `errors` count the evidence rows, labelled or not, and the upstream failures
    among them (0 when unknown: the guardrails and health checks that need them are then
    skipped). `step_requests` counts the evidence requests of the current weight step (assigned
    at random, or sticky by a trusted key; never pins, mirror copies or fallbacks): a step passes
    only when each arm has served enough of them.
    `assigned` counts the step's requests split at random per request, the units the sample-ratio
    check may treat as independent; sticky requests are left out of it, because a caller's
    requests all go one way and the randomised unit there is the caller, not the request.
    `p99_latency_ms` and `p50_latency_ms` are over this arm's OK evidence rows (shown per arm;
    the latency guardrail reads p99).
    """

    total: int
    correct: int
    requests: int = 0
    errors: int = 0
    assigned: int | None = None
    p99_latency_ms: float | None = None
    step_requests: int | None = None
    p50_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("total", "correct", "requests", "errors"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"ArmCounts.{name} must be a non-negative integer, got {value!r}")
        if self.correct > self.total:
            raise ConfigError(f"ArmCounts: correct ({self.correct}) exceeds labelled total ({self.total})")
        if self.errors > self.requests:
            raise ConfigError(f"ArmCounts: errors ({self.errors}) exceed requests ({self.requests})")
        for name in ("assigned", "step_requests"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"ArmCounts.{name} must be a non-negative integer, got {value!r}")

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @classmethod
    def parse(cls, text: str) -> ArmCounts:
        """'1440/2000' (correct/labelled), as the CLI takes counts from elsewhere."""
        correct, sep, total = text.partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(total=int(total), correct=int(correct))
        except ValueError:
            raise ConfigError(f"counts {text!r} are not CORRECT/TOTAL integers, e.g. 1440/2000") from None


@dataclass(frozen=True)
class Policy:
    """The rules of one rollout; defaults suit a classifier with a few hundred labels a day."""

    alpha: float = 0.05            # false-decision rate of the accuracy test, however often it looks
    tau: float = 0.05              # mixing spread: the size of accuracy difference we expect to matter
    min_labels: int = 200          # labelled rows needed in EACH arm before any accuracy decision
    margin: float = 0.01           # promote when the challenger is not worse than this (non-inferiority)
    error_tau: float = 0.02        # mixing spread of the error-rate test
    max_error_rate: float = 0.05   # absolute cap on the challenger's error rate ...
    min_error_requests: int = 100  # ... applied once it has served this many rows
    latency_ratio: float = 1.5     # roll back when challenger p99 > this x champion p99 ...
    min_latency_requests: int = 200  # ... once each arm has this many requests
    srm_p: float = 0.001           # sample-ratio mismatch: hold a promotion below this p-value ...
    srm_min_requests: int = 8      # ... once each arm has this many assigned requests
    min_step_requests: int = 50    # assigned requests each arm needs in a weight step before it can pass
    label_balance_p: float = 0.001  # unbalanced label arrival: hold a promotion below this p-value
    max_labels: int | None = None  # per arm; an undecided rollout past it ends inconclusive
    max_duration_s: float | None = None  # an undecided rollout older than this ends inconclusive
    auto: bool = False             # a blessed candidate of a triggered retraining is rolled out without a person

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise ConfigError(f"policy {name}={getattr(self, name)!r} is invalid; expected {expected}")

        check("alpha", 0 < self.alpha < 1, "a number in (0, 1)")
        check("tau", self.tau > 0, "a positive number")
        check("error_tau", self.error_tau > 0, "a positive number")
        check("margin", 0 <= self.margin < 1, "a number in [0, 1)")
        check("max_error_rate", 0 < self.max_error_rate <= 1, "a number in (0, 1]")
        check("latency_ratio", self.latency_ratio >= 1, "a ratio >= 1")
        check("srm_p", 0 < self.srm_p < 1, "a number in (0, 1)")
        check("label_balance_p", 0 < self.label_balance_p < 1, "a number in (0, 1)")
        for name in ("min_labels", "min_error_requests", "min_latency_requests", "srm_min_requests",
                     "min_step_requests"):
            value = getattr(self, name)
            check(name, isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                  "a positive integer")
        check("max_labels", self.max_labels is None or self.max_labels >= self.min_labels,
              "empty or an integer >= min_labels")
        check("max_duration_s", self.max_duration_s is None or self.max_duration_s > 0,
              "empty or a positive number of seconds")
        check("auto", isinstance(self.auto, bool), "true or false")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Policy:
        """From a policy file or a stored rollout; unknown keys are an error, not ignored."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown policy keys {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigError(f"policy is invalid: {err}") from None


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def intersect(self, other: Interval) -> Interval:
        return Interval(max(self.low, other.low), min(self.high, other.high))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one look, with everything needed to explain it later."""

    decision: Decision
    likelihood_ratio: float | None      # mSPRT statistic of the accuracy difference
    p_value: float | None               # always-valid p-value (running minimum when stateful)
    interval: tuple[float, float] | None  # always-valid CI of challenger - champion accuracy
    difference: float | None            # observed challenger - champion accuracy
    reasons: list[str]
    holds: list[str] = field(default_factory=list)  # checks that held a promotion
    checks: dict[str, Any] = field(default_factory=dict)  # figures of every check

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "likelihood_ratio": self.likelihood_ratio,
            "p_value": self.p_value,
            "interval": list(self.interval) if self.interval is not None else None,
            "difference": self.difference,
            "reasons": list(self.reasons),
            "holds": list(self.holds),
            "checks": self.checks,
        }


# ----------------------------------------------------------------------------- the statistics

def difference_variance(c1: Any, n1: Any, c2: Any, n2: Any) -> tuple[Any, Any]:
    """(p2 - p1, var) of two proportions; a degenerate 0 variance (all right or all wrong in
    both arms) falls back to the add-half estimate so the statistic stays finite."""
    n1 = np.asarray(n1, dtype=float)
    n2 = np.asarray(n2, dtype=float)
    p1 = np.asarray(c1, dtype=float) / n1
    p2 = np.asarray(c2, dtype=float) / n2
    var = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    q1 = (np.asarray(c1, dtype=float) + 0.5) / (n1 + 1)
    q2 = (np.asarray(c2, dtype=float) + 0.5) / (n2 + 1)
    smoothed = q1 * (1 - q1) / n1 + q2 * (1 - q2) / n2
    var = np.where(var > 0, var, smoothed)
    return _scalar(p2 - p1), _scalar(var)


def mixture_likelihood_ratio(difference: Any, variance: Any, tau: float) -> Any:
    """mSPRT statistic for H0: difference = 0 with a N(0, tau^2) mixture (JPW 2022, eq. 11)."""
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    t2 = tau * tau
    log_lr = 0.5 * np.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
    return _scalar(np.exp(np.minimum(log_lr, 700.0)))


def always_valid_halfwidth(variance: Any, tau: float, alpha: float) -> Any:
    """Half-width of the always-valid (1 - alpha) interval: the set of effects the mSPRT keeps."""
    v = np.asarray(variance, dtype=float)
    t2 = tau * tau
    return _scalar(np.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) - np.log(v / (v + t2)))))


def _scalar(value: Any) -> Any:
    array = np.asarray(value)
    return float(array) if array.ndim == 0 else array


# ----------------------------------------------------------------------------- one look

def analyze(
    champion: ArmCounts,
    challenger: ArmCounts,
    policy: Policy | None = None,
    *,
    weight: float | None = None,
    elapsed_s: float | None = None,
    running: Interval | None = None,
    running_p: float | None = None,
) -> Verdict:
    """Decide one look. `weight` is the challenger's configured percent for the sample-ratio
    check (None skips it); `elapsed_s` the rollout's age for `max_duration_s`; `running` and
    `running_p` the intersected interval and minimum p-value of earlier looks (see
    `SequentialAnalysis`), which this look narrows further."""
    policy = policy or Policy()
    reasons: list[str] = []
    holds: list[str] = []
    checks: dict[str, Any] = {}

    # Guardrails first: they act on all requests and roll back whatever the labels say.
    guard = _guardrails(champion, challenger, policy, checks)

    accuracy_ready = champion.total >= policy.min_labels and challenger.total >= policy.min_labels
    lr = p_value = difference = None
    interval: Interval | None = None
    if champion.total and challenger.total:
        difference, variance = difference_variance(champion.correct, champion.total,
                                                   challenger.correct, challenger.total)
        lr = mixture_likelihood_ratio(difference, variance, policy.tau)
        half = always_valid_halfwidth(variance, policy.tau, policy.alpha)
        interval = Interval(difference - half, difference + half)
        p_value = min(1.0, 1.0 / lr) if lr > 0 else 1.0
        if accuracy_ready:
            if running is not None:
                interval = interval.intersect(running)
            if running_p is not None:
                p_value = min(p_value, running_p)
    checks["accuracy"] = {
        "champion": champion.accuracy, "challenger": challenger.accuracy,
        "labelled": [champion.total, challenger.total], "min_labels": policy.min_labels,
    }

    holds.extend(_health_holds(champion, challenger, policy, weight, checks))

    checks["guardrail"] = bool(guard)
    if guard:
        return Verdict("rollback", lr, p_value, _pair(interval), difference, guard, holds, checks)

    if not accuracy_ready:
        reasons.append(
            f"waiting for labels: {champion.total} champion and {challenger.total} challenger labelled rows, "
            f"{policy.min_labels} needed in each arm before any accuracy decision"
        )
        decision: Decision = "continue"
    else:
        assert interval is not None and difference is not None
        span = f"[{interval.low:+.4f}, {interval.high:+.4f}]"
        if interval.low > interval.high:
            # Intersected intervals that no longer overlap: the data changed under the test
            # (e.g. drift mid-rollout). Never promote on that; report it.
            reasons.append(f"the always-valid intervals of successive looks no longer overlap {span}; "
                           "the arms' accuracies moved during the rollout")
            decision = "continue"
        elif interval.high < 0:
            reasons.append(
                f"challenger accuracy is lower: difference {difference:+.4f}, always-valid "
                f"{1 - policy.alpha:.0%} interval {span} lies entirely below 0 "
                f"(mSPRT statistic {lr:.3g} >= {1 / policy.alpha:.3g})"
            )
            decision = "rollback"
        elif interval.low > -policy.margin and not holds:
            reasons.append(
                f"challenger is not worse than the champion by more than {policy.margin:.3f}: "
                f"difference {difference:+.4f}, always-valid interval {span}"
            )
            decision = "promote"
        elif interval.low > -policy.margin:
            reasons.append(f"accuracy would promote (interval {span}) but a health check holds it")
            reasons.extend(holds)
            decision = "continue"
        else:
            reasons.append(
                f"not decided yet: difference {difference:+.4f}, always-valid interval {span} "
                f"still includes 0 and reaches below -{policy.margin:.3f}"
            )
            decision = "continue"

    if decision == "continue":
        limit = _limit_reached(champion, challenger, policy, elapsed_s)
        if limit:
            reasons.append(limit)
            decision = "inconclusive"
    return Verdict(decision, lr, p_value, _pair(interval), difference, reasons, holds, checks)


def _pair(interval: Interval | None) -> tuple[float, float] | None:
    return (interval.low, interval.high) if interval is not None else None


def _guardrails(champion: ArmCounts, challenger: ArmCounts, policy: Policy, checks: dict[str, Any]) -> list[str]:
    """Reasons to roll back from all evidence requests: upstream error rate (sequential test and
    cap), p99 latency. The verdict's `checks["guardrail"]` is True when one of them decided."""
    reasons: list[str] = []
    rate = challenger.error_rate
    errors: dict[str, Any] = {"champion": champion.error_rate, "challenger": rate,
                              "cap": policy.max_error_rate}
    if rate is not None and challenger.requests >= policy.min_error_requests and rate > policy.max_error_rate:
        reasons.append(
            f"challenger error rate {rate:.2%} ({challenger.errors}/{challenger.requests}) exceeds the "
            f"cap of {policy.max_error_rate:.2%}"
        )
    if champion.requests and challenger.requests:
        # Errors as the "successes": a positive difference means the challenger fails more often.
        diff, var = difference_variance(champion.errors, champion.requests, challenger.errors, challenger.requests)
        half = always_valid_halfwidth(var, policy.error_tau, policy.alpha)
        errors["difference"] = diff
        errors["interval"] = [diff - half, diff + half]
        errors["likelihood_ratio"] = mixture_likelihood_ratio(diff, var, policy.error_tau)
        if (challenger.requests >= policy.min_error_requests and champion.requests >= policy.min_error_requests
                and diff - half > 0):
            reasons.append(
                f"challenger errors more often: error-rate difference {diff:+.4f}, always-valid interval "
                f"[{diff - half:+.4f}, {diff + half:+.4f}] lies above 0"
            )
    checks["errors"] = errors

    latency: dict[str, Any] = {"champion_p99_ms": champion.p99_latency_ms,
                               "challenger_p99_ms": challenger.p99_latency_ms, "tolerance": policy.latency_ratio}
    if (champion.p99_latency_ms and challenger.p99_latency_ms is not None
            and min(champion.requests, challenger.requests) >= policy.min_latency_requests):
        ratio = challenger.p99_latency_ms / champion.p99_latency_ms
        latency["ratio"] = ratio
        if ratio > policy.latency_ratio:
            reasons.append(
                f"challenger p99 latency {challenger.p99_latency_ms:.1f} ms is {ratio:.2f}x the champion's "
                f"{champion.p99_latency_ms:.1f} ms (tolerance {policy.latency_ratio:.2f}x)"
            )
    checks["latency"] = latency
    return reasons


def sample_ratio_p(champion_assigned: int, challenger_assigned: int, weight: float) -> float | None:
    """Chi-square p-value of the observed split against the configured challenger percent."""
    from scipy.stats import chisquare

    total = champion_assigned + challenger_assigned
    if total == 0 or not 0 < weight < 100:
        return None
    expected = [total * (100 - weight) / 100, total * weight / 100]
    return float(chisquare([champion_assigned, challenger_assigned], f_exp=expected).pvalue)


def label_balance_p(champion: ArmCounts, challenger: ArmCounts) -> float | None:
    """Chi-square test of labelled vs unlabelled rows per arm (are labels arriving evenly?)."""
    from scipy.stats import chi2_contingency

    table = [[champion.total, champion.requests - champion.total],
             [challenger.total, challenger.requests - challenger.total]]
    if min(champion.requests, challenger.requests) == 0 or champion.total > champion.requests \
            or challenger.total > challenger.requests:
        return None
    column_sums = [table[0][0] + table[1][0], table[0][1] + table[1][1]]
    if 0 in column_sums:
        return None  # everything labelled or nothing: nothing to compare
    return float(chi2_contingency(table).pvalue)


def _step_served(counts: ArmCounts) -> int | None:
    """Requests this arm served in the current step (by weight or sticky hash); counts from
    before `step_requests` existed have only `assigned`."""
    return counts.step_requests if counts.step_requests is not None else counts.assigned


def _health_holds(champion: ArmCounts, challenger: ArmCounts, policy: Policy,
                  weight: float | None, checks: dict[str, Any]) -> list[str]:
    holds: list[str] = []
    srm: dict[str, Any] = {"p_value": None, "threshold": policy.srm_p, "weight": weight}
    if weight is not None:
        champion_served, challenger_served = _step_served(champion), _step_served(challenger)
        if champion_served is not None and challenger_served is not None \
                and min(champion_served, challenger_served) < policy.min_step_requests:
            holds.append(
                f"this {weight:g}% step has served {champion_served} champion and {challenger_served} "
                f"challenger requests by weight; {policy.min_step_requests} each are needed before it can pass"
            )
    if weight is not None and champion.assigned is not None and challenger.assigned is not None:
        srm["assigned"] = [champion.assigned, challenger.assigned]
        if min(champion.assigned, challenger.assigned) >= policy.srm_min_requests:
            p = sample_ratio_p(champion.assigned, challenger.assigned, weight)
            srm["p_value"] = p
            if p is not None and p < policy.srm_p:
                share = challenger.assigned / (champion.assigned + challenger.assigned)
                holds.append(
                    f"sample-ratio mismatch: the challenger got {share:.1%} of randomly assigned requests "
                    f"({challenger.assigned} of {champion.assigned + challenger.assigned}) where {weight:g}% "
                    f"was configured (chi-square p = {p:.2g} < {policy.srm_p:g})"
                )
    checks["srm"] = srm

    balance: dict[str, Any] = {"p_value": None, "threshold": policy.label_balance_p}
    if champion.requests and challenger.requests:
        p = label_balance_p(champion, challenger)
        balance["p_value"] = p
        balance["labelled_share"] = [champion.total / champion.requests, challenger.total / challenger.requests]
        if p is not None and p < policy.label_balance_p:
            holds.append(
                f"labels arrive unevenly: {champion.total / champion.requests:.1%} of champion rows and "
                f"{challenger.total / challenger.requests:.1%} of challenger rows are labelled "
                f"(chi-square p = {p:.2g} < {policy.label_balance_p:g}); accuracy may be biased"
            )
    checks["label_balance"] = balance
    return holds


def _limit_reached(champion: ArmCounts, challenger: ArmCounts, policy: Policy, elapsed_s: float | None) -> str | None:
    if policy.max_labels is not None and min(champion.total, challenger.total) >= policy.max_labels:
        return (f"no decision within the sample limit of {policy.max_labels} labelled rows per arm: "
                "the champion stays, the challenger is withdrawn")
    if policy.max_duration_s is not None and elapsed_s is not None and elapsed_s >= policy.max_duration_s:
        return (f"no decision within the time limit of {policy.max_duration_s:g} s: "
                "the champion stays, the challenger is withdrawn")
    return None


# ----------------------------------------------------------------------------- across looks

@dataclass
class SequentialAnalysis:
    """Looks at a growing stream of counts, keeping the intersected interval and the running
    minimum p-value, so a decision once justified by the evidence is not lost to noise at the
    next look. The state is plain numbers (`state()` / `from_state`) for the controller to persist."""

    policy: Policy = field(default_factory=Policy)
    interval: Interval | None = None
    min_p: float | None = None
    looks: int = 0

    def look(self, champion: ArmCounts, challenger: ArmCounts, *, weight: float | None = None,
             elapsed_s: float | None = None) -> Verdict:
        verdict = analyze(champion, challenger, self.policy, weight=weight, elapsed_s=elapsed_s,
                          running=self.interval, running_p=self.min_p)
        self.looks += 1
        if (verdict.interval is not None and champion.total >= self.policy.min_labels
                and challenger.total >= self.policy.min_labels):
            self.interval = Interval(*verdict.interval)
            self.min_p = verdict.p_value
        return verdict

    def state(self) -> dict[str, Any]:
        return {
            "interval": [self.interval.low, self.interval.high] if self.interval else None,
            "min_p": self.min_p, "looks": self.looks,
        }

    @classmethod
    def from_state(cls, policy: Policy, state: dict[str, Any] | None) -> SequentialAnalysis:
        state = state or {}
        interval = state.get("interval")
        return cls(policy=policy, interval=Interval(*interval) if interval else None,
                   min_p=state.get("min_p"), looks=int(state.get("looks", 0)))

