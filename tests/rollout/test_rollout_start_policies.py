"""`ingot rollout start` on one machine takes the gateway's cache, fallback chain, default answer,
deadline and previous-champion upstream as flags (beside --capture-sample), checks them with the
gateway's own parser, and the tables `ingot rollout run` writes keep them."""

from __future__ import annotations

import pytest

from ingot.cli.main import main
from ingot.gateway.routing import Upstream, load_routing_table

from .test_rollout_cli import setup, start  # noqa: F401  (the fixture)

FLAGS = ("--capture-sample", "0.5", "--cache-ttl-s", "60", "--cache-stale-ttl-s", "600", "--cache-max-bytes", "4096",
         "--fallback", "other_arm,previous_champion,cached,default", "--default-class-id", "1", "--deadline-ms", "300",
         "--previous-champion-rest", "http://127.0.0.1:8521", "--previous-champion-grpc", "127.0.0.1:8520",
         "--previous-champion-version", "1")


def test_the_tables_the_local_controller_writes_keep_the_flags(setup):  # noqa: F811
    start(setup, *FLAGS)
    assert main(["rollout", "run", "--once"]) == 0
    table = load_routing_table(setup.routes)
    assert table.challenger_weight == 50
    assert table.capture is not None and table.capture.sample == 0.5
    policy = table.resilience
    assert policy.cache is not None and (policy.cache.ttl_s, policy.cache.stale_ttl_s, policy.cache.max_bytes) == (
        60, 600, 4096)
    assert policy.fallback == ("other_arm", "previous_champion", "cached", "default")
    assert (policy.default_class_id, policy.deadline_ms) == (1, 300)
    assert table.previous_champion == Upstream("http://127.0.0.1:8521", "127.0.0.1:8520", 1)


def test_without_the_flags_the_tables_have_none(setup):  # noqa: F811
    start(setup)
    assert main(["rollout", "run", "--once"]) == 0
    table = load_routing_table(setup.routes)
    assert (table.resilience.cache, table.resilience.fallback, table.previous_champion, table.capture) == (
        None, (), None, None)


@pytest.mark.parametrize(("flags", "message"), [
    (("--fallback", "default"), "step 'default' needs default_answer"),
    (("--fallback", "retry"), "unknown step 'retry'"),
    (("--fallback", "cached", "--cache-ttl-s", "60"), "step 'cached' needs cache"),
    (("--fallback", "previous_champion"), "step 'previous_champion' needs upstreams.previous_champion"),
    (("--previous-champion-rest", "http://a:1"), "needs --previous-champion-grpc, --previous-champion-version"),
    (("--cache-max-bytes", "10"), "--cache-stale-ttl-s and --cache-max-bytes need --cache-ttl-s"),
    (("--deadline-ms", "0"), "deadline_ms"),
    (("--default-class-id", "2"), "'default' is not a fallback step"),
])
def test_bad_flags_fail_in_one_line_before_anything_starts(setup, capsys, flags, message):  # noqa: F811
    assert main(["rollout", "start", "digits", "--challenger", "2", "--routes", str(setup.routes),
                 "--champion-rest", "http://a:1", "--challenger-rest", "http://b:1", "--champion-grpc", "a:1",
                 "--challenger-grpc", "b:1", *flags]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not setup.routes.exists()
