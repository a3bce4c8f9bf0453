"""The audiences' tables, in the profile database (created, emptied and rebuilt with it: ``profiles/store.py``)::

    engage_hits      node_id, tally, key, time, value: each event a tally counts, under the node it
                     is home to (so a merge or a split of profiles carries it, as it does the events)
    engage_members   audience, profile_id, entered_at: who is in each audience now
    engage_history   audience, profile_id, entered_at, exited_at (NULL while in): every stay
    engage_computed  profile_id, traits (JSON): the person's computed traits
    engage_due       profile_id, due: the next moment the person's answers can change on time alone
    engage_announce  id, seq, message (JSON): "Audience Entered/Exited" events committed with the
                     change, waiting to be appended to the log (then deleted)
    engage_state     name, value (JSON): the definitions in force, each tally's backfill

Times are epoch seconds (REAL). ``{text}`` and ``{clustered}`` as in ``profiles/store.py``.
"""

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS engage_hits (node_id TEXT NOT NULL, tally TEXT NOT NULL, key {text} NOT NULL,
        time DOUBLE PRECISION NOT NULL, value TEXT, PRIMARY KEY (node_id, tally, key)){clustered}""",
    """CREATE TABLE IF NOT EXISTS engage_members (audience TEXT NOT NULL, profile_id TEXT NOT NULL,
        entered_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (audience, profile_id)){clustered}""",
    "CREATE INDEX IF NOT EXISTS engage_members_profile ON engage_members (profile_id)",
    """CREATE TABLE IF NOT EXISTS engage_history (audience TEXT NOT NULL, profile_id TEXT NOT NULL,
        entered_at DOUBLE PRECISION NOT NULL, exited_at DOUBLE PRECISION, PRIMARY KEY (audience, profile_id, entered_at)){clustered}""",
    "CREATE INDEX IF NOT EXISTS engage_history_profile ON engage_history (profile_id)",
    "CREATE TABLE IF NOT EXISTS engage_computed (profile_id TEXT PRIMARY KEY, traits TEXT NOT NULL){clustered}",
    "CREATE TABLE IF NOT EXISTS engage_due (profile_id TEXT PRIMARY KEY, due DOUBLE PRECISION NOT NULL){clustered}",
    "CREATE INDEX IF NOT EXISTS engage_due_time ON engage_due (due)",
    """CREATE TABLE IF NOT EXISTS engage_announce (id TEXT PRIMARY KEY, seq BIGINT NOT NULL, profile_id TEXT NOT NULL,
        message TEXT NOT NULL){clustered}""",
    "CREATE TABLE IF NOT EXISTS engage_state (name TEXT PRIMARY KEY, value TEXT NOT NULL){clustered}",
)
TABLES = ("engage_hits", "engage_members", "engage_history", "engage_computed", "engage_due", "engage_announce",
          "engage_state")  # fmt: skip
PER_PROFILE = ("engage_members", "engage_history", "engage_computed", "engage_due", "engage_announce")  # an erasure's


def reevaluate(store, pids) -> None:
    """Mark these profiles due now: the builder's ``Live.tick`` evaluates them again (after an erasure
    left someone else in a profile the person was in)."""
    store._many("INSERT INTO engage_due (profile_id, due) VALUES (?, 0) ON CONFLICT (profile_id) DO UPDATE SET due = 0",
                [(pid,) for pid in sorted(pids)])  # fmt: skip
