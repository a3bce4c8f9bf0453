"""The stub snippet printed by `intilery snippet` and the start-up banner."""

from __future__ import annotations

from collector.serve.snippet import METHODS, snippet


def test_snippet_embeds_key_and_host_and_loads_the_tag():
    """The key and host are JavaScript strings; the tag is loaded from the host; a page is queued."""
    html = snippet("wk_live_123", "https://collect.example.com/")
    assert html.startswith("<script>\n") and html.endswith("\n</script>")
    assert '(window,document,"wk_live_123","https://collect.example.com");' in html
    assert 's.src=h+"/intilery.js"' in html
    assert "i.load(k,{host:h});i.page()" in html
    for method in METHODS.split():
        assert method in html


def test_snippet_cannot_break_out_of_its_script_element():
    """A hostile key or host cannot close the script element or start markup."""
    html = snippet('k"</script><img src=x onerror=alert(1)>', "https://h.example/<!--")
    body = html[len("<script>\n") : -len("\n</script>")]
    assert "<" not in body and ">" not in body.replace("=>", "")


def test_first_party_snippet_loads_the_tag_from_the_site_path():
    """With host "/p" the tag comes from the site's own path, and firstParty is passed to load()."""
    html = snippet("wk_live_123", "/p/", first_party=True)
    assert '(window,document,"wk_live_123","/p");' in html
    assert "i.load(k,{host:h,firstParty:!0});i.page()" in html
