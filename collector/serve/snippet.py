"""The stub snippet that site owners paste into their HTML (``intilery snippet``).

The snippet defines a global ``intilery`` array whose methods queue each call together with
the page it was made on (``[url, title, referrer]``) and the time, then loads ``intilery.js``
asynchronously from the collector; the tag replaces the array and replays the calls in order.
Pasting it twice is harmless: the second copy sees ``intilery.invoked`` and does nothing.

Readable form of the script (the minified copy below is what is printed)::

    !function (w, d, key, host) {
      var i = w.intilery;
      i = w.intilery = i && i.push ? i : [];      // not an element with id="intilery" (window.intilery too)
      if (i.invoked) return;                      // pasted twice, or the tag already runs
      i.invoked = true;
      "load page track ...".split(" ").forEach(function (m) {
        i[m] = function () {
          var a = [].slice.call(arguments);
          a.unshift(m);
          a.p = [d.location.href, d.title, d.referrer];  // the page the call was made on
          a.t = new Date().toISOString();                // and when
          i.push(a);
          return i;
        };
      });
      var s = d.createElement("script"), f = d.getElementsByTagName("script")[0];
      s.async = true;
      s.src = host + "/intilery.js";
      f.parentNode.insertBefore(s, f);
      i.load(key, {host: host});
      i.page();
    }(window, document, "KEY", "HOST");
"""

from __future__ import annotations

import argparse
import json
from typing import Any

METHODS = "load page track identify group alias reset setAnonymousId addSourceMiddleware trackLink trackForm ready flush optIn optOut debug"

_STUB = (
    "!function(w,d,k,h){var i=w.intilery;i=w.intilery=i&&i.push?i:[];if(i.invoked)return;i.invoked=!0;"
    '"' + METHODS + '".split(" ").forEach(function(m){i[m]=function(){'
    "var a=[].slice.call(arguments);a.unshift(m);a.p=[d.location.href,d.title,d.referrer];"
    "a.t=new Date().toISOString();i.push(a);return i}});"
    'var s=d.createElement("script"),f=d.getElementsByTagName("script")[0];'
    's.async=!0;s.src=h+"/intilery.js";f.parentNode.insertBefore(s,f);'
    "i.load(k,{host:h%s});i.page()}(window,document,%s,%s);"
)


def _js_string(value: str) -> str:
    """A JavaScript string literal that is also safe inside an HTML <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def snippet(write_key: str, host: str, consent: bool = False, first_party: bool = False) -> str:
    """The ready-to-paste ``<script>`` element for a source's write key and the collector URL.

    ``consent=True`` loads the tag in consent mode: nothing is stored or sent until the page
    calls ``intilery.optIn()`` (from its consent banner). ``first_party=True`` is for a source with
    ``first_party = true`` served on the site's own path (``host="/p"``): the tag sends the
    collector its cookies and leaves ``itl_aid`` to the collector.

    >>> print(snippet("wk_live_123", "https://c.example.com/"))  # doctest: +ELLIPSIS
    <script>
    !function(w,d,k,h){...}(window,document,"wk_live_123","https://c.example.com");
    </script>
    """
    options = (',consent:"required"' if consent else "") + (",firstParty:!0" if first_party else "")
    script = _STUB % (options, _js_string(write_key), _js_string(host.rstrip("/")))
    return "<script>\n" + script + "\n</script>"


def _host(text: str) -> str:
    """``--host``: an http(s) URL with a host, or a path of the site (first-party mode)."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if text.startswith("/") or (parts.scheme in ("http", "https") and parts.netloc):
        return text
    raise argparse.ArgumentTypeError(f"--host is the collector's URL (https://collect.example.com) or a path of the "
                                     f"site (/p), not {text!r}")  # fmt: skip


def add_parser(commands: Any) -> None:
    """Register ``intilery snippet``."""
    snip = commands.add_parser("snippet", help="print the snippet to paste into a site's pages")
    snip.add_argument("--write-key", required=True, help="the source's write_key (a bare serve's: cat data/dev-write-key)")
    snip.add_argument("--host", default="http://127.0.0.1:8080", type=_host,
                      help="the collector's public URL, or a path of the site (/p) (default http://127.0.0.1:8080)")  # fmt: skip
    snip.add_argument("--consent", choices=["required"], help="send nothing until the page calls intilery.optIn()")
    snip.add_argument("--first-party", action="store_true", help="for a first_party source on the site's own path")
    snip.set_defaults(run=cmd_snippet)


def cmd_snippet(args: argparse.Namespace) -> int:
    print(snippet(args.write_key, args.host.rstrip("/"), consent=args.consent == "required", first_party=args.first_party))
    return 0
