"""Email (issue 31): personalised messages through the outbox, one-click unsubscribe done right.

::

    templates/<name>.liquid ──render (the person's traits)──▶ outbox row (lane "email") ──▶ SMTP relay
                                                               │ message.py: MIME, Message-ID, List-Unsubscribe, DKIM
    POST /u/TOKEN ──▶ the person's consent set false (suppressions) ─┘ a marketing send to them is skipped

``templates.py`` (front matter, Liquid with its limits, HTML escaping, the text part),
``message.py`` (the message as sent: stable Message-ID, RFC 8058 headers, DKIM),
``tokens.py`` (the unsubscribe token: an HMAC naming the person and the list),
``store.py`` (undeliverable addresses and unsubscribes), ``smtp.py`` (one attempt through
aiosmtplib, its outcome classified: 4xx and connection errors retried, 5xx dead),
``sender.py`` (the outbox's ``email`` lane), ``cli.py`` (``intilery email preview``).
Settings: ``[email]`` in ``intilery.toml`` (``collector.config.Email``). Docs: docs/email.md.
"""
