"""Privacy requests (GDPR Art. 15, 17, 20, 21; CCPA opt-out): suppress, erase and export one person.

    subjects.py     a request's subject expanded to every identifier of the person; salted hashes; matching
    suppression.py  the shared list of suppressed (hashed) identifiers, checked once per message at ingest
    regulations.py  the requests on disk (``data/regulations/``): the audit record, the job's state
    erase.py        the erase job: every place the project writes (segments, dead letters, profiles, NATS)
    nats_eraser.py  a person's messages erased from the JetStream stream
    shared_list.py  the suppression list and its salt shared by collectors on NATS, in a key-value bucket
    export.py       a person's profile and every event, as NDJSON
    service.py      what runs inside the collector: the list refreshed, rotation on request, jobs run
    routes.py       ``/v1/regulations`` and the export route (the access token)
    cli.py          ``intilery privacy suppress|erase|export|status``
"""
