"""Definitions as files (``collector/engage/definitions.py``): a folder of audiences and computed
traits loaded and checked together; every mistake one ``file:line: reason``, all of them at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector.config import Config
from collector.engage.conditions import Audience, Event, Trait, parse, tally
from collector.engage.definitions import DefinitionError, Definitions, folder, load, load_yaml

VIP = """
    key: vip
    name: VIP customers
    expose_to_browser: true
    condition:
      any:
        - trait: lifetime_orders
          op: gte
          value: 10
        - audience: big_spenders
    """
BIG = """
    name: Big spenders
    description: more than 500 in a month
    condition:
      trait: spend_30d
      op: gt
      value: 500
    """
LAPSED = """
    condition:
      all:
        - audience: vip
        - not:
            event: Order Completed
            within: 90d
    """
SPEND = """
    kind: sum
    event: Order Completed
    property: properties.revenue
    where: {field: properties.currency, value: GBP}
    within: 30d
    """
ORDERS = """
    name: lifetime_orders
    kind: count
    event: Order Completed
    """


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def engage(tmp_path) -> Path:
    root = tmp_path / "engage"
    write(root, "audiences/vip.yaml", VIP)
    write(root, "audiences/big_spenders.yaml", BIG)
    write(root, "audiences/lapsed.yml", LAPSED)
    write(root, "traits/spend_30d.yaml", SPEND)
    write(root, "traits/lifetime_orders.yaml", ORDERS)
    return root


def problems(root: Path, environ: dict | None = None) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load(root, environ)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_a_folder_loads_with_each_audience_after_those_it_names(engage):
    found = load(engage)
    assert list(found.audiences) == ["big_spenders", "vip", "lapsed"]
    vip = found.audiences["vip"]
    assert (vip.key, vip.name, vip.expose_to_browser) == ("vip", "VIP customers", True)
    assert found.audiences["big_spenders"].name == "Big spenders"
    assert found.audiences["lapsed"].name == "lapsed"  # the key when no name is given
    assert found.audiences["lapsed"].expose_to_browser is False
    assert vip.condition == parse({"any": [{"trait": "lifetime_orders", "op": "gte", "value": 10}, {"audience": "big_spenders"}]})
    spend = found.traits["spend_30d"]
    assert (spend.name, spend.kind, spend.within) == ("spend_30d", "sum", 30 * 86400.0)
    assert spend.tally == tally("Order Completed", {"field": "properties.currency", "value": "GBP"}, "properties.revenue")
    orders = found.traits["lifetime_orders"]
    assert (orders.kind, orders.within, orders.tally.prop) == ("count", None, None)
    lapsed = found.audiences["lapsed"].condition.items[1].item
    assert isinstance(lapsed, Event) and lapsed.within == 90 * 86400.0
    assert set(found.tallies()) == {spend.tally.id, orders.tally.id, lapsed.tally.id} and len(found.tallies()) == 2
    assert bool(found)


def test_the_digest_changes_with_the_meaning_only(engage):
    first = load(engage)
    assert load(engage).digest == first.digest
    write(engage, "audiences/big_spenders.yaml", BIG.replace("value: 500", "value: 600"))
    changed = load(engage)
    assert changed.digest != first.digest
    assert changed.audiences["big_spenders"].digest != first.audiences["big_spenders"].digest
    assert changed.audiences["vip"].digest == first.audiences["vip"].digest
    write(engage, "traits/spend_30d.yaml", SPEND.replace("30d", "7d"))
    assert load(engage).traits["spend_30d"].digest != first.traits["spend_30d"].digest


def test_no_folder_is_no_definitions(tmp_path):
    assert not load(tmp_path / "nowhere")
    assert load(tmp_path / "nowhere") == Definitions(digest=load(tmp_path / "nowhere").digest)
    (tmp_path / "empty" / "audiences").mkdir(parents=True)
    assert not load(tmp_path / "empty")


def test_other_files_are_not_read(engage):
    write(engage, "audiences/notes.txt", "anything: [")
    write(engage, "audiences/vip.yaml~", "anything: [")
    (engage / "audiences" / "drafts.yaml").mkdir()
    assert list(load(engage).audiences) == ["big_spenders", "vip", "lapsed"]


def test_json_definitions(tmp_path):
    root = tmp_path / "engage"
    write(root, "audiences/gb.json", '{"condition": {"trait": "country", "op": "in", "value": ["GB", "NO"]}}')
    assert load(root).audiences["gb"].condition == Trait(("country",), parse({"trait": "x", "op": "in", "value": ["GB", "NO"]}).compare)


def test_yaml_values_are_what_a_marketer_wrote(tmp_path):
    """Only true/false are booleans (NO is Norway, yes is a text) and dates stay text, ordered as ISO times are."""
    path = write(tmp_path, "c.yaml", """
        all:
          - trait: country
            op: in
            value: [GB, NO, "off", on]
          - trait: signed_up
            op: gte
            value: 2026-01-01
          - trait: consent
            value: True
        """)
    data = load_yaml(path)
    assert data["all"][0]["value"] == ["GB", "NO", "off", "on"]
    assert data["all"][1]["value"] == "2026-01-01"
    assert data["all"][2]["value"] is True
    condition = parse(data)
    from collector.engage.conditions import Subject, holds

    assert holds(condition, Subject(traits={"country": "NO", "signed_up": "2026-03-02T10:00:00Z", "consent": True}))
    assert not holds(condition, Subject(traits={"country": "NO", "signed_up": "2025-12-31T23:00:00Z", "consent": True}))


def test_folder_is_engage_dir_or_beside_the_configuration(tmp_path):
    assert folder(Config(engage_dir=tmp_path / "defs")) == tmp_path / "defs"
    assert folder(Config(config_file=str(tmp_path / "conf" / "intilery.toml"))) == tmp_path / "conf" / "engage"
    assert folder(Config()) == Path("engage")


# --- mistakes: file:line: reason, every one at once ---------------------------------------------------
def test_an_audience_that_does_not_exist(engage):
    path = write(engage, "audiences/lapsed.yml", LAPSED.replace("audience: vip", "audience: vipp"))
    assert problems(engage) == [f"{path}:3: the condition names audience 'vipp', and there is none "
                                "(audiences: big_spenders, lapsed, vip)"]  # fmt: skip


def test_a_circle_of_audiences(engage):
    path = write(engage, "audiences/big_spenders.yaml", BIG.replace("""
      trait: spend_30d
      op: gt
      value: 500""", """
      all:
        - trait: spend_30d
          op: gt
          value: 500
        - not: {audience: lapsed}"""))
    assert problems(engage) == [f"{path}:8: audiences name each other in a circle: big_spenders -> lapsed -> vip -> big_spenders"]


def test_an_audience_naming_itself(tmp_path):
    path = write(tmp_path, "audiences/a.yaml", """
        condition:
          any:
            - trait: x
              value: 1
            - audience: a
        """)
    assert problems(tmp_path) == [f"{path}:5: audiences name each other in a circle: a -> a"]


def test_the_same_key_twice(engage):
    other = write(engage, "audiences/vip.json", '{"condition": {"trait": "plan", "value": "pro"}}')
    assert problems(engage) == [f"{engage / 'audiences' / 'vip.yaml'}:1: the audience key 'vip' is also {other}'s"]
    path = write(engage, "traits/spend_30d.yml", "kind: count\nevent: Order Completed\n")
    assert problems(engage)[0] == f"{path}:1: a computed trait named 'spend_30d' is defined twice (also in {engage / 'traits' / 'spend_30d.yaml'})"


def test_a_key_that_is_not_the_file_name(engage):
    path = write(engage, "audiences/vips.yaml", VIP)
    assert problems(engage) == [f"{path}:1: the key 'vip' is not the file's name ('vips'): name the file vip.yaml"]
    path.unlink()
    bad = write(engage, "audiences/high value.yaml", "condition: {trait: plan, value: pro}\n")
    assert problems(engage) == [f"{bad}: the key 'high value' is letters, digits, '_' and '-' (up to 100)"]
    bad.unlink()
    path = write(engage, "traits/orders.yaml", ORDERS)
    assert problems(engage) == [f"{path}:1: the name 'lifetime_orders' is not the file's name ('orders'): name the file lifetime_orders.yaml"]


def test_a_variable_from_the_environment(tmp_path):
    write(tmp_path, "audiences/vip.yaml", """
        name: ${VIP_NAME}
        condition:
          trait: spend
          op: gt
          value: ${VIP_THRESHOLD}
        """)
    found = load(tmp_path, {"VIP_NAME": "Our best", "VIP_THRESHOLD": "500"})
    assert found.audiences["vip"].name == "Our best"
    assert found.audiences["vip"].condition == parse({"trait": "spend", "op": "gt", "value": 500})
    assert problems(tmp_path, {"VIP_NAME": "Our best"}) == [f"{tmp_path / 'audiences' / 'vip.yaml'}:5: ${{VIP_THRESHOLD}} is not set in the environment"]


def test_bad_yaml(tmp_path):
    path = write(tmp_path, "audiences/vip.yaml", """
        name: VIP
        condition:
          trait: plan
          value: [pro, team
        """)
    (problem,) = problems(tmp_path)
    assert problem.startswith(f"{path}:5: not valid YAML: ")
    path = write(tmp_path, "audiences/vip.yaml", """
        condition:
          trait: plan
          value: pro
          value: team
        """)
    assert problems(tmp_path) == [f"{path}:4: not valid YAML: 'value' is given twice in one mapping (first on line 3)"]
    path = write(tmp_path, "audiences/vip.yaml", "condition:\n  ? [trait, plan]\n  : pro\n")
    assert problems(tmp_path) == [f"{path}:2: not valid YAML: a key is a text, not a list or mapping"]
    path.write_bytes(b"condition: \xff\n")
    (problem,) = problems(tmp_path)
    assert problem.startswith(f"{path}: cannot read it: ")


@pytest.mark.parametrize(
    "text, line, reason",
    [("", 1, "the file holds a mapping of the definition's keys"),
     ("- condition: {trait: plan}\n", 1, "the file holds a mapping of the definition's keys"),
     ("name: VIP\n", 1, "'condition' is missing"),
     ("name: VIP\ncondtion: {trait: plan, value: pro}\n", 2,
      "unknown key 'condtion' (allowed: condition, description, expose_to_browser, key, name)"),
     ("name: [VIP]\ncondition: {trait: plan, value: pro}\n", 1, "'name' is a text"),
     ("condition: {trait: plan, value: pro}\nexpose_to_browser: yes\n", 2, "'expose_to_browser' is true or false"),
     ("condition: premium\n", 1, "a condition is a mapping (all, any, not, field, trait, audience or event), not 'premium'"),
     ("condition:\n  field: properties.revenue\n  op: gt\n  value: 50\n", 2,
      "'field' is a field of the event at hand, and here there is none: use 'trait' for the person, "
      "or 'event' with 'where' for their events")],
)  # fmt: skip
def test_audience_mistakes(tmp_path, text, line, reason):
    path = write(tmp_path, "audiences/vip.yaml", text)
    assert problems(tmp_path) == [f"{path}:{line}: {reason}"]


@pytest.mark.parametrize(
    "text, line, reason",
    [("kind: total\nevent: Order Completed\n", 1,
      "unknown kind 'total': use one of count, sum, min, max, first, last, most_frequent, unique_list"),
     ("kind: count\nevent: Order Completed\nproperty: properties.revenue\n", 3, "a count counts events: it takes no 'property'"),
     ("kind: sum\nevent: Order Completed\n", 1,
      "a sum needs a 'property' (the event's field it is of, e.g. properties.revenue)"),
     ("kind: sum\n", 1, "'event' is missing"),
     ("event: Order Completed\n", 1, "'kind' is missing"),
     ("kind: last\nevent: Order Completed\nproperty: properties..category\n", 3,
      "'property' is a dotted path such as properties.revenue, not 'properties..category'"),
     ("kind: count\nevent: ''\n", 2, "'event' names an event (its 'event' field, e.g. Order Completed), not ''"),
     ("kind: count\nevent: Order Completed\nwithin: 3 months\n", 3, "'3 months' is not a duration: write a whole number and s, m, h or d (30d, 2h, 15m, 10s)"),
     ("kind: count\nevent: Order Completed\nwhere:\n  trait: plan\n  value: pro\n", 4,
      "'trait' is about a person, and here there is only an event: use 'field'"),
     ("kind: count\nevent: Order Completed\nwhere: big\n", 3, "a condition is a mapping (all, any, not, field, trait, audience or event), not 'big'"),
     ("kind: count\nevent: Order Completed\nwhere:\n  field: properties.revenue\n  op: more\n", 5,
      "unknown operator 'more': use one of eq, ne, gt, gte, lt, lte, in, not_in, contains, starts_with, exists"),
     ("kind: count\nevent: Order Completed\nwindow: 7d\n", 3,
      "unknown key 'window' (allowed: description, event, kind, name, property, where, within)"),
     ("kind: count\nevent: Order Completed\nname: 'orders 90d'\n", 3, "the name 'orders 90d' is letters, digits, '_' and '-' (up to 100)")],
)  # fmt: skip
def test_computed_trait_mistakes(tmp_path, text, line, reason):
    path = write(tmp_path, "traits/orders.yaml", text)
    assert problems(tmp_path) == [f"{path}:{line}: {reason}"]


def test_every_mistake_is_listed_at_once(engage):
    spend = write(engage, "traits/spend_30d.yaml", SPEND.replace("kind: sum", "kind: summ"))
    orders = write(engage, "traits/lifetime_orders.yaml", ORDERS + "within: forever\n")
    vip = write(engage, "audiences/vip.yaml", VIP.replace("op: gte", "op: at_least"))
    big = write(engage, "audiences/big_spenders.yaml", BIG + "  - audience: lapsed\n")
    gone = write(engage, "audiences/gone.yaml", "condition: {audience: nobody}\n")
    found = problems(engage)
    assert found == [
        f"{orders}:4: 'forever' is not a duration: write a whole number and s, m, h or d (30d, 2h, 15m, 10s)",
        f"{spend}:1: unknown kind 'summ': use one of count, sum, min, max, first, last, most_frequent, unique_list",
        f"{big}:7: not valid YAML: expected <block end>, but found '-'",
        f"{vip}:7: unknown operator 'at_least': use one of eq, ne, gt, gte, lt, lte, in, not_in, contains, starts_with, exists",
        f"{gone}:1: the condition names audience 'nobody', and there is none (audiences: gone, lapsed)",
    ]
    # the audiences whose files have mistakes are not also said not to exist (lapsed names vip)


def test_a_circle_is_found_beside_other_mistakes(engage):
    trait = write(engage, "traits/spend_30d.yaml", SPEND.replace("within: 30d", "within: 30"))
    a = write(engage, "audiences/a.yaml", "condition: {not: {audience: b}}\n")
    write(engage, "audiences/b.yaml", "condition: {audience: a}\n")
    assert problems(engage) == [f"{trait}:5: 30 is not a duration: write a whole number and s, m, h or d (30d, 2h, 15m, 10s)",
                                f"{a}:1: audiences name each other in a circle: a -> b -> a"]  # fmt: skip


def test_an_audience_condition_keeps_where_it_names_an_audience(tmp_path):
    path = write(tmp_path, "c.yaml", "all:\n  - trait: plan\n    value: pro\n  - audience: vip\n")
    audience = parse(load_yaml(path)).items[1]
    assert audience == Audience("vip") and audience.line == 4


def test_the_examples_in_docs_engage_md_load(tmp_path):
    """Every definition shown in docs/engage.md is one the loader takes as it is written there."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "engage.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    written = []
    for i, block in enumerate(blocks):
        named = re.match(r"# engage/(audiences|traits)/(\w+)\.yaml\n", block)
        if named:
            written.append(write(tmp_path, f"{named.group(1)}/{named.group(2)}.yaml", block))
        elif block.startswith(("condition:", "kind:")):
            written.append(write(tmp_path, f"{'traits' if block.startswith('kind:') else 'audiences'}/example_{i}.yaml", block))
    assert len(written) == 4
    found = load(tmp_path)
    assert len(found.audiences) + len(found.traits) == 4
