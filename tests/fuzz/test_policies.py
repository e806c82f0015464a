"""Fuzz of the retention policy document (shared/retention.py, Policy.from_doc), as an operator
gives it (`skyvault policy create|set --file`, shared/service/policies.py), of the price sheet
(shared/billing.py, PriceSheet.from_doc) and of the month a bill is asked for
(shared/service/bills.parse_month, GET bill?month=). Each gives its value or refuses with a
MalformedMessage or another Invalid, never another exception; a refused policy change leaves
the vault as it was."""
from __future__ import annotations

import json

import pytest
from hypothesis import example, given, strategies as st

from shared import billing
from shared.errors import Invalid, NotFound, Refused
from shared.formats import MalformedMessage
from shared.retention import Policy
from shared.service import bills, policies
from skyvault.commands import policy as policy_command
from skyvault.vaultclient import AgentError
from tests.fuzz.inputs import (FUZZ, FUZZ_LARGE, NASTY_STRINGS, as_parsed, json_values, mutated, nasty_texts,
                               read_or_refused)
from tests.fuzz.world import World

POLICIES = [
    {"v": 1, "schedule": {"frequency": "daily", "times": ["02:00", "14:30"]}, "retention": {"daily": {"days": 30}}},
    {"v": 1, "timeZone": "Europe/Paris", "schedule": {"frequency": "daily", "times": ["23:59"]},
     "retention": {"daily": {"days": 7}, "weekly": {"weekday": "sunday", "weeks": 12},
                   "monthly": {"on": {"day": "last"}, "months": 12},
                   "yearly": {"month": 12, "on": {"day": 31}, "years": 10}}},
    {"v": 1, "timeZone": "America/New_York", "schedule": {"frequency": "weekly", "times": ["01:00"],
                                                          "weekdays": ["monday", "saturday"]},
     "retention": {"weekly": {"weekday": "saturday", "weeks": 5},
                   "monthly": {"on": {"week": "first", "weekday": "monday"}, "months": 6},
                   "yearly": {"month": 1, "on": {"week": "last", "weekday": "saturday"}, "years": 2}}},
]
SHEET = json.loads((billing.PRICES_DIR / "2026-12.json").read_text())
ZONES = ["America", "Etc", "A" * 300, "Europe/Paris/", "Europe//Paris", "posixrules", "Factory", "UTC", "utc",
         "Etc/GMT+14", "Etc/GMT+15"]


def _policy_or_refused(doc) -> None:
    try:
        doc = as_parsed(doc)
    except ValueError:  # json refuses to read the text
        return
    try:
        policy = Policy.from_doc(doc)
    except MalformedMessage:
        return
    assert Policy.from_doc(as_parsed(policy.to_doc())) == policy


@FUZZ
@given(json_values)
def test_any_json_value_is_a_policy_or_refused(doc):
    _policy_or_refused(doc)


@FUZZ
@given(st.sampled_from(POLICIES).flatmap(mutated))
def test_a_changed_policy_is_one_or_refused(doc):
    _policy_or_refused(doc)


@FUZZ
@given(st.sampled_from(POLICIES),
       st.sampled_from(ZONES) | st.from_regex(r"[A-Za-z][A-Za-z0-9_+-]{0,12}(/[A-Za-z]{1,8}){0,2}", fullmatch=True))
def test_a_policy_in_any_zone_is_one_or_refused(doc, zone):
    _policy_or_refused({**doc, "timeZone": zone})


@pytest.mark.parametrize("zone", ["America", "Etc", "A" * 300])
def test_a_policy_whose_zone_is_a_directory_or_too_long_is_refused(zone):
    with pytest.raises(MalformedMessage):
        Policy.from_doc({**POLICIES[0], "timeZone": zone})


# Policy changes on the service

WORLD = World("policies")


def _vault():
    return WORLD.services.index.get_vault(WORLD.tenant, WORLD.vault_id)


names = st.sampled_from(["files", "default", "nightly"]) | st.text(max_size=20) | st.sampled_from(NASTY_STRINGS)


@FUZZ
@given(st.sampled_from(("create", "set")), names, st.sampled_from(POLICIES).flatmap(mutated) | json_values)
@example("create", "America", {**POLICIES[0], "timeZone": "Europe/Paris"})
def test_a_refused_policy_change_leaves_the_vault_as_it_was(change, name, doc):
    try:
        doc = as_parsed(doc)
    except ValueError:
        return
    before = WORLD.state()
    try:
        (policies.create_policy if change == "create" else policies.set_policy)(WORLD.services, _vault(), name, doc)
    except (Invalid, Refused, NotFound):
        assert WORLD.state() == before, before.changes(WORLD.state())
    else:
        assert name in _vault().policies


# The operator's policy file



@FUZZ_LARGE
@given(st.binary(max_size=200) | nasty_texts.filter(lambda t: len(t) < 10_000 or t.startswith(b"{")))
def test_any_policy_file_is_read_or_refused(tmp_path_factory, data):
    read_or_refused(tmp_path_factory.mktemp("policy") / "policy.json", data, policy_command.read_document)


@pytest.mark.parametrize("data", [b'{"v": ' + b"1" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000],
                         ids=["5000-digit integer", "deep nesting"])
def test_a_policy_file_that_json_cannot_read_is_refused(tmp_path, data):
    with pytest.raises(AgentError):
        path = tmp_path / "policy.json"
        path.write_bytes(data)
        policy_command.read_document(str(path))


# Price sheets and months

def _sheet_or_refused(doc) -> None:
    try:
        doc = as_parsed(doc)
    except ValueError:
        return
    try:
        sheet = billing.PriceSheet.from_doc(doc)
    except MalformedMessage:
        return
    assert billing.PriceSheet.from_doc(as_parsed(sheet.to_doc())) == sheet


@FUZZ
@given(json_values | mutated(SHEET))
def test_a_changed_price_sheet_is_one_or_refused(doc):
    _sheet_or_refused(doc)


@FUZZ
@given(st.text(max_size=12) | st.sampled_from(NASTY_STRINGS) | st.from_regex(r"[0-9]{4}-[0-9]{2}", fullmatch=True))
@example("0000-01")
@example("9999-12")
@example("2026-1\n")
def test_any_month_is_one_or_refused(text):
    try:
        month = bills.parse_month(text)
    except Invalid:
        return
    assert month.day == 1 and month.isoformat()[:7] == text


@FUZZ
@given(st.text(max_size=12) | st.sampled_from(["0001-01", "0000-01", "9999-12", "1970-01", "2026-11", "2027-01"])
       | st.from_regex(r"[0-9]{4}-(0[1-9]|1[0-2])", fullmatch=True))
def test_a_bill_of_any_month_is_answered_or_refused(month):
    before = WORLD.state()
    status, answer = WORLD.answer("GET", "bill", params={"month": month})
    assert status == 200 or 400 <= status < 500, (status, answer)
    assert status == 200 or WORLD.state() == before, before.changes(WORLD.state())
