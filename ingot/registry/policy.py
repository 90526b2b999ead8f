"""The stage policy: which stage changes a caller may ask for, where a version lands when it
becomes READY, and whom a promotion displaces. Plain functions of the facts the store reads
inside its locked write transaction, so the rules are stated (and testable) apart from the SQL.
"""

from __future__ import annotations

from ingot.errors import ModelError
from ingot.registry.records import Stage, Status

# Stage changes a caller may ask for. Entering a stage is never done from None by hand: mark_ready
# assigns the first stage. A champion leaves its stage only when another version is promoted.
ALLOWED_TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.CANDIDATE: frozenset({Stage.CHALLENGER, Stage.CHAMPION, Stage.ARCHIVED, Stage.REJECTED}),
    Stage.CHALLENGER: frozenset({Stage.CHAMPION, Stage.CANDIDATE, Stage.ARCHIVED, Stage.REJECTED}),
    Stage.CHAMPION: frozenset(),
    Stage.ARCHIVED: frozenset({Stage.CHAMPION}),  # rollback to a previous champion
    # Re-admission: a READY version rejected by a rollout becomes testable again by hand (a
    # rollback can follow a server's trouble, or evidence someone forged), recorded with its reason.
    Stage.REJECTED: frozenset({Stage.CANDIDATE}),
}
SERVING_STAGES = frozenset({Stage.CHALLENGER, Stage.CHAMPION})
# A version entering one of these stages sends the one holding it to the second stage.
DISPLACED_TO: dict[Stage, Stage] = {Stage.CHAMPION: Stage.ARCHIVED, Stage.CHALLENGER: Stage.CANDIDATE}


def ready_stage(name: str, *, blessed: bool, champion: int | None) -> tuple[Stage, str]:
    """The first stage of a version that just verified, and why: the first blessed READY version
    of a name becomes champion, later ones (and anything never blessed) candidates."""
    if blessed and champion is None:
        return Stage.CHAMPION, f"first blessed READY version of {name}"
    if blessed:
        return Stage.CANDIDATE, f"blessed; {name}:{champion} is champion"
    return Stage.CANDIDATE, "not blessed by an evaluation gate; only blessed versions become champion automatically"


def check_transition(label: str, current: Stage | None, target: Stage, status: str) -> None:
    """Refuse a stage change the policy does not allow (ModelError saying why)."""
    if current is None:
        raise ModelError(f"{label} has no stage yet (status {status}); only a READY version can change stage")
    if target not in ALLOWED_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current])) or "none"
        hint = " (a champion is archived when another version is promoted)" if current is Stage.CHAMPION else ""
        raise ModelError(
            f"cannot move {label} from {current.value} to {target.value}; allowed from "
            f"{current.value}: {allowed}{hint}"
        )
    if target in SERVING_STAGES and status != Status.READY.value:
        raise ModelError(f"{label} is {status}; only a READY version can become {target.value}")
    if current is Stage.REJECTED and status != Status.READY.value:
        raise ModelError(f"{label} is {status}; only a READY version can be re-admitted as a candidate")


def check_promotion(label: str, name: str, current: Stage, champion: int | None) -> None:
    """A candidate becomes champion directly only when the name has none: otherwise the A/B test
    (challenger) decides."""
    if champion is not None and current is Stage.CANDIDATE:
        raise ModelError(
            f"{label} is a candidate and {name}:{champion} is champion; make it the "
            "challenger first so the A/B test decides"
        )
