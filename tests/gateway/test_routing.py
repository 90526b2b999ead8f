"""Routing table: the shape in docs/architecture.md, validation naming the key, dump/load round trip, hot reload."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from ingot.gateway.routing import (
    RoutingError,
    RoutingTableWatcher,
    dump,
    load_routing_table,
    parse,
    validate,
)

DOCUMENTED_TABLE = """
model: digits                       # the TF Serving model name clients use
experiment: digits-v2-vs-v1         # id written into every inference-log row
salt: digits-v2-vs-v1               # sticky-hash salt (default: the experiment id)
caller_header: x-ingot-caller       # the caller key for sticky assignment
weights: {challenger: 10}           # percent of unpinned traffic sent to the challenger, 0..100
mirror: 0                           # percent of champion traffic copied to the challenger
upstreams:
  champion:   {rest: "http://127.0.0.1:8501", grpc: "127.0.0.1:8500", version: 1}
  challenger: {rest: "http://127.0.0.1:8511", grpc: "127.0.0.1:8510", version: 2}
feedback_token_file: ""             # when set, POST /v1/feedback needs this bearer token
"""


def design_doc() -> dict:
    return yaml.safe_load(DOCUMENTED_TABLE)


def test_the_design_document_shape_loads() -> None:
    table = parse(DOCUMENTED_TABLE)
    assert (table.model, table.experiment, table.salt, table.caller_header) == (
        "digits", "digits-v2-vs-v1", "digits-v2-vs-v1", "x-ingot-caller")
    assert (table.challenger_weight, table.mirror, table.feedback_token_file) == (10.0, 0.0, "")
    assert table.champion.rest == "http://127.0.0.1:8501" and table.champion.grpc == "127.0.0.1:8500"
    assert table.challenger is not None and table.challenger.version == 2
    assert table.variant_for_version(2) == "challenger" and table.variant_for_version(7) is None


def test_dump_round_trips_and_load_reads_a_file(tmp_path: Path) -> None:
    table = parse(DOCUMENTED_TABLE)
    text = dump(table)
    assert parse(text) == table
    assert yaml.safe_load(text) == {**design_doc()}
    (tmp_path / "routes.yaml").write_text(text)
    assert load_routing_table(tmp_path / "routes.yaml") == table
    assert dump(design_doc()) == text  # a plain dict is validated, then written the same way


def test_defaults_salt_from_experiment_and_no_challenger() -> None:
    table = validate({"model": "digits", "experiment": "e1",
                      "upstreams": {"champion": {"rest": "http://a:8501", "grpc": "a:8500", "version": 3}}})
    assert (table.salt, table.caller_header, table.challenger_weight, table.challenger) == (
        "e1", "x-ingot-caller", 0.0, None)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(weights={"challenger": 101}), r"weights.challenger: expected a percentage 0..100, got 101"),
    (lambda d: d.update(weights={"challenger": -1}), r"weights.challenger: expected a percentage 0..100"),
    (lambda d: d.update(weights={"challenger": True}), r"weights.challenger: expected a percentage"),
    (lambda d: d.update(weights={"challenger": 10.001}), r"weights.challenger: at most two decimals"),
    (lambda d: d.update(weights={"champion": 90}), r"weights.champion: unknown key; expected one of challenger"),
    (lambda d: d.update(mirror=250), r"mirror: expected a percentage 0..100, got 250"),
    (lambda d: d.update(mirorr=5), r"routing table mirorr: unknown key; expected one of model, experiment"),
    (lambda d: d.pop("model"), r"model: expected a name"),
    (lambda d: d.update(model="../etc"), r"model: expected a name"),
    (lambda d: d["upstreams"]["champion"].update(rest="ftp://x:1"), r"upstreams.champion.rest: expected TF Serving"),
    (lambda d: d["upstreams"]["champion"].update(rest="http://x:8501/v1/models"), r"upstreams.champion.rest"),
    (lambda d: d["upstreams"]["champion"].update(rest="http://x:99999"), r"upstreams.champion.rest"),
    (lambda d: d["upstreams"]["challenger"].update(grpc="http://x:8500"), r"upstreams.challenger.grpc: expected"),
    (lambda d: d["upstreams"]["challenger"].update(version=0), r"upstreams.challenger.version: expected .* >= 1"),
    (lambda d: d["upstreams"]["challenger"].update(version=1), r"upstreams.challenger.version: must differ"),
    (lambda d: d["upstreams"]["challenger"].update(weight=3), r"upstreams.challenger.weight: unknown key"),
    (lambda d: d["upstreams"].update(canary={}), r"upstreams.canary: unknown key"),
    (lambda d: d["upstreams"].pop("champion"), r"upstreams.champion: missing"),
    (lambda d: d["upstreams"].pop("challenger"), r"weights.challenger and mirror must be 0"),
    (lambda d: d.update(caller_header="x-ingot-variant"), r"caller_header: 'x-ingot-variant' is a header the gateway"),
    (lambda d: d.update(caller_header="bad header"), r"caller_header: expected an HTTP header name"),
    (lambda d: d.update(feedback_token_file=3), r"feedback_token_file: expected a file path"),
])
def test_each_invalid_key_is_named_with_what_is_expected(change, message: str) -> None:
    doc = design_doc()
    change(doc)
    with pytest.raises(RoutingError, match=message):
        validate(doc)
    with pytest.raises(RoutingError):
        dump(doc)  # a writer cannot produce a table the gateway would refuse


def test_not_yaml_or_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match="not valid YAML"):
        parse("model: [unclosed")
    with pytest.raises(RoutingError, match="must be a mapping"):
        parse("- a list")
    with pytest.raises(RoutingError, match="cannot read routing table"):
        load_routing_table(tmp_path / "missing.yaml")


def test_the_watcher_takes_good_edits_and_refuses_broken_ones_keeping_the_last_good(tmp_path: Path, caplog) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(DOCUMENTED_TABLE)
    seen = []
    watcher = RoutingTableWatcher(path, on_change=seen.append)
    assert watcher.check() is False  # unchanged
    doc = design_doc()
    doc["weights"]["challenger"] = 50
    path.write_text(dump(doc))
    assert watcher.check() is True and watcher.table.challenger_weight == 50 and len(seen) == 1
    with caplog.at_level(logging.ERROR, logger="ingot.gateway.routing"):
        path.write_text(DOCUMENTED_TABLE.replace("{challenger: 10}", "{challenger: 500}"))
        assert watcher.check() is False
        assert watcher.check() is False  # the same broken content: not logged again
        path.unlink()
        assert watcher.check() is False
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 2
    assert "edit refused, keeping the last good table: routing table weights.challenger" in errors[0]
    assert "cannot be read" in errors[1]
    assert watcher.table.challenger_weight == 50 and (watcher.reloads, watcher.rejections) == (1, 2)
    path.write_text(DOCUMENTED_TABLE)
    assert watcher.check() is True and watcher.table.challenger_weight == 10


def test_the_make_gateway_plan_pins_champion_and_challenger_to_the_two_newest_versions(tmp_path: Path) -> None:
    from ingot.errors import ConfigError
    from ingot.gateway.tryout import plan

    for version in (1, 3, 4):
        (tmp_path / "digits" / str(version)).mkdir(parents=True)
    (tmp_path / "digits" / ".tmp-xyz").mkdir()
    config, routes = plan(str(tmp_path), None)
    table = validate(routes)
    assert (table.model, table.champion.version, table.challenger.version, table.challenger_weight) == (
        "digits", 3, 4, 50)
    assert table.experiment == "digits-v4-vs-v3" and "model_version_policy { all {} }" in config
    assert table.resilience.cache is not None and table.resilience.cache.ttl_s == 300  # with make gateway's Redis
    with pytest.raises(ConfigError, match="no published model named 'cats'"):
        plan(str(tmp_path), "cats")


def test_pin_token_file_and_trusted_caller_header_round_trip_through_dump() -> None:
    doc = {**design_doc(), "pin_token_file": "/var/run/ingot/pin-token", "trusted_caller_header": "x-ingot-caller"}
    table = validate(doc)
    assert (table.pin_token_file, table.trusted_caller_header) == ("/var/run/ingot/pin-token", "x-ingot-caller")
    assert parse(dump(table)) == table and yaml.safe_load(dump(table)) == doc
    assert "pin_token_file" not in dump(design_doc())  # unset fields stay out of written tables
