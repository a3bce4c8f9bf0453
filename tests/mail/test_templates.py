"""Templates: front matter, escaping, the text part, mistakes with their lines, and the preview
of a real person (a profile built from the log) through the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.cli import main
from collector.engage.definitions import DefinitionError
from collector.engage.email import templates
from collector.profiles.builder import Builder
from collector.profiles.rules import Rules
from collector.profiles.store import SqliteStore
from profiles.conftest import Log, ev

CART = """---
subject: "Your cart, {{ traits.first_name }}"
kind: marketing
---
<p>Hello {{ traits.first_name }}, <a href="{{ unsubscribe_url }}">unsubscribe</a></p>
"""


def test_values_are_escaped_in_html_and_the_text_part_is_derived():
    t = templates.parse("cart", CART, Path("cart.liquid"))
    out = templates.render(t, {"traits": {"first_name": "<b>Bo</b>\nBcc: x@y"}, "unsubscribe_url": "https://c.example/u/T"})
    assert "&lt;b&gt;Bo&lt;/b&gt;" in out.html and "<b>Bo" not in out.html
    assert out.subject == "Your cart, <b>Bo</b> Bcc: x@y"  # one line: no header injection
    assert out.text == "Hello <b>Bo</b> Bcc: x@y, unsubscribe (https://c.example/u/T)\n"
    assert out.kind == "marketing"


def test_a_written_text_part_and_missing_variables():
    t = templates.parse("o", "---\nsubject: Order {{ event.properties.order_id }}\nkind: transactional\n---\n"
                             "<p>Thanks</p>\n--- text ---\nThanks, {{ traits.name }}!\n", Path("o.liquid"))  # fmt: skip
    out = templates.render(t, {"traits": {}})
    assert (out.subject, out.text, out.html) == ("Order", "Thanks, !\n", "<p>Thanks</p>\n")
    with pytest.raises(templates.RenderError, match="undefined"):
        templates.render(t, {"traits": {}}, strict=True)


def test_limits_are_on():
    t = templates.parse("loop", "---\nsubject: s\n---\n{% for i in (1..100000) %}{% for j in (1..100000) %}x{% endfor %}{% endfor %}\n",
                        Path("loop.liquid"))  # fmt: skip
    with pytest.raises(templates.RenderError, match="limit"):
        templates.render(t, {})


def test_mistakes_name_file_and_line(tmp_path):
    with pytest.raises(DefinitionError) as caught:
        templates.parse("bad", "---\nsubject: x\nkind: promo\nfoo: 1\n---\n<p>ok</p>\n{% if %}\n", Path("bad.liquid"))
    assert caught.value.problems == ["bad.liquid:4: unknown key 'foo' in the front matter (subject, kind)",
                                     "bad.liquid:3: kind is marketing or transactional, not 'promo'",
                                     "bad.liquid:7: the HTML body is not Liquid: missing expression"]  # fmt: skip
    with pytest.raises(DefinitionError, match=r"no.liquid:1: a template starts with front matter"):
        templates.parse("no", "<p>hi</p>", Path("no.liquid"))


def test_engage_check_covers_templates(tmp_path, capsys):
    (tmp_path / "engage" / "templates").mkdir(parents=True)
    (tmp_path / "engage" / "templates" / "cart.liquid").write_text(CART)
    (tmp_path / "intilery.toml").write_text("")
    assert main(["engage", "check", "--config", str(tmp_path / "intilery.toml")]) == 0
    assert "1 template" in capsys.readouterr().out
    (tmp_path / "engage" / "templates" / "bad.liquid").write_text("---\nkind: marketing\n---\n<p/>\n")
    assert main(["engage", "check", "--config", str(tmp_path / "intilery.toml")]) == 1
    assert "bad.liquid:1: 'subject:' is required" in capsys.readouterr().out


def test_preview_renders_for_a_real_person(tmp_path, capsys):
    data = tmp_path / "data"
    Log(data).write([ev("identify", userId="u1", traits={"email": "ann@example.com", "first_name": "Ann"})])
    store = SqliteStore(data / "profiles.db")
    Builder(store, data, Rules()).catch_up()
    store.close()
    (tmp_path / "engage" / "templates").mkdir(parents=True)
    (tmp_path / "engage" / "templates" / "cart.liquid").write_text(CART)
    (tmp_path / "engage" / "templates" / "gap.liquid").write_text("---\nsubject: Hi {{ traits.last_name }}\n---\n<p>x</p>\n")
    config = tmp_path / "intilery.toml"
    config.write_text(f'data_dir = "{data}"\n[email]\nfrom = "Shop <news@shop.example>"\npublic_url = "https://c.example"\n')
    assert main(["email", "preview", "cart", "--profile", "user_id:u1", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "Subject: Your cart, Ann" in out and "To: ann@example.com" in out
    assert "List-Unsubscribe: <https://c.example/u/" in out and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in out
    assert main(["email", "preview", "gap", "--profile", "user_id:u1", "--config", str(config)]) == 1
    assert "traits.last_name is undefined" in capsys.readouterr().err
    assert main(["email", "preview", "cart", "--profile", "user_id:nobody", "--config", str(config)]) == 1
    assert "no profile holds user_id:nobody" in capsys.readouterr().err
