"""The SQLite tables, as peewee models. Only the StateStore touches them (tests may read the file)."""
from __future__ import annotations

import peewee

PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "busy_timeout": 5000, "foreign_keys": 1}


class _Row(peewee.Model):
    class Meta:
        legacy_table_names = False


class Task(_Row):
    description = peewee.TextField()
    state = peewee.CharField(index=True)
    kind = peewee.CharField(null=True)
    executor = peewee.CharField(null=True, index=True)
    tier = peewee.CharField(null=True)
    attempts = peewee.IntegerField(default=0)
    sender = peewee.CharField(null=True)
    source = peewee.CharField(default="mcp")
    result = peewee.TextField(null=True)
    error = peewee.TextField(null=True)
    created_at = peewee.DoubleField()
    updated_at = peewee.DoubleField()
    idempotency_key = peewee.CharField(null=True, unique=True)   # "mcp:<client's key>", "im:<message id>"
    workspace = peewee.TextField(null=True)                      # the task's git worktree (its claim, durable)
    branch = peewee.CharField(null=True)
    session_id = peewee.CharField(null=True)
    continues = peewee.IntegerField(null=True)
    progress = peewee.TextField(null=True)    # the executor's latest progress report ("3/10 reading files")


class TaskEvent(_Row):
    """Every transition with its reason, and progress reports: what `/why` explains a task from."""

    task = peewee.ForeignKeyField(Task, backref="events", on_delete="CASCADE")
    at = peewee.DoubleField()
    kind = peewee.CharField()                  # transition | progress
    from_state = peewee.CharField(null=True)
    to_state = peewee.CharField(null=True)
    reason = peewee.TextField()


class CostEntry(_Row):
    task = peewee.ForeignKeyField(Task, null=True, backref="costs", on_delete="SET NULL")
    at = peewee.DoubleField(index=True)
    tier = peewee.CharField()
    model = peewee.CharField()
    route = peewee.CharField()                 # proxy | direct | local
    tokens_in = peewee.IntegerField(default=0)
    tokens_out = peewee.IntegerField(default=0)
    usd = peewee.DecimalField(max_digits=14, decimal_places=8, default=0)


class SystemEvent(_Row):
    at = peewee.DoubleField(index=True)
    kind = peewee.CharField()
    detail = peewee.TextField()
    data = peewee.TextField(null=True)         # JSON


class ActorState(_Row):
    """An actor's small durable state document (e.g. the IM bridge's cursor), one row per owner."""

    owner = peewee.CharField(primary_key=True)
    data = peewee.TextField()                  # JSON
    updated_at = peewee.DoubleField()


class ImInbound(_Row):
    """Every IM message handled (a refusal too), by its OpenClaw identity: none is handled twice."""

    key = peewee.CharField(unique=True)        # "<session key>:<OpenClaw message id>"
    session_key = peewee.CharField()
    sender = peewee.CharField()
    written_at = peewee.DoubleField()          # when OpenClaw recorded it
    handled_at = peewee.DoubleField()


class ImOutbound(_Row):
    """What goes back to a conversation, in order (id): replies, task news, notices; `sent_at` once delivered."""

    session_key = peewee.CharField()
    text = peewee.TextField()
    what = peewee.CharField()                  # reply | task | notice
    created_at = peewee.DoubleField()
    sent_at = peewee.DoubleField(null=True, index=True)


class NotifySetting(_Row):
    """What a sender changed of their notification setting by `/notify` (NULL: the configured value stands)."""

    sender = peewee.CharField(primary_key=True)
    events = peewee.TextField(null=True)       # event names, comma-separated ("" : none)
    quiet = peewee.CharField(null=True)        # "22:00-07:00" | "off"
    failures_in_quiet = peewee.BooleanField(null=True)
    locale = peewee.CharField(null=True)
    timezone = peewee.CharField(null=True)
    budget_at = peewee.IntegerField(null=True)   # budget warnings below this share of a cap (%) are dropped
    updated_at = peewee.DoubleField()


class ImHeld(_Row):
    """News held during a sender's quiet hours, delivered (queued to im_outbound) once they end."""

    sender = peewee.CharField(index=True)
    event = peewee.CharField()                 # notifications.EVENTS
    text = peewee.TextField()                  # already in the sender's language
    held_at = peewee.DoubleField()
    released_at = peewee.DoubleField(null=True, index=True)
    outbound = peewee.ForeignKeyField(ImOutbound, null=True, on_delete="SET NULL")


MODELS = (Task, TaskEvent, CostEntry, SystemEvent, ActorState, ImInbound, ImOutbound, NotifySetting, ImHeld)

# The hot path of every task (create, read, move) as plain SQL on the models' tables: sqlite3 keeps these
# statements prepared, where peewee would build each query anew (most of a move's cost). TASK_COLUMNS are
# TaskView's fields in order (`id` is its `task_id`).
TASK_COLUMNS = ("id", "description", "state", "kind", "executor", "tier", "attempts", "sender", "source", "result",
                "error", "created_at", "updated_at", "idempotency_key", "workspace", "branch", "session_id",
                "continues", "progress")
SELECT_TASKS = f'SELECT {", ".join(TASK_COLUMNS)} FROM "task"'   # + WHERE / ORDER BY / LIMIT (StateStore._list)
SELECT_TASK = SELECT_TASKS + ' WHERE "id" = ?'
SELECT_TASK_BY_KEY = SELECT_TASKS + ' WHERE "idempotency_key" = ?'
INSERT_TASK = (f'INSERT INTO "task" ({", ".join(TASK_COLUMNS[1:])}) '
               f'VALUES ({", ".join("?" for _ in TASK_COLUMNS[1:])})')
UPDATE_PROGRESS = 'UPDATE "task" SET "progress" = ? WHERE "id" = ?'
UPDATE_TASK = ('UPDATE "task" SET "state" = ?, "kind" = ?, "executor" = ?, "tier" = ?, "attempts" = ?, "result" = ?, '
               '"error" = ?, "updated_at" = ? WHERE "id" = ?')
INSERT_EVENT = ('INSERT INTO "task_event" ("task_id", "at", "kind", "from_state", "to_state", "reason") '
                'VALUES (?, ?, ?, ?, ?, ?)')


def open_database(path: str) -> peewee.SqliteDatabase:
    database = peewee.SqliteDatabase(path, pragmas=PRAGMAS)
    database.bind(MODELS)
    database.connect()
    database.create_tables(MODELS)
    _add_missing_columns(database)
    return database


def _add_missing_columns(database: peewee.SqliteDatabase) -> None:
    """A database made by an earlier version gains the columns added since (nothing stored is touched)."""
    columns = {column.name for column in database.get_columns(Task._meta.table_name)}
    if "idempotency_key" not in columns:
        with database.atomic():
            database.execute_sql('ALTER TABLE "task" ADD COLUMN "idempotency_key" VARCHAR(255)')
            database.execute_sql('CREATE UNIQUE INDEX IF NOT EXISTS "task_idempotency_key" ON "task" '
                                 '("idempotency_key")')
    for name, kind in WORKSPACE_COLUMNS:   # the coding tasks' worktree, branch, session and what they continue
        if name not in columns:
            database.execute_sql(f'ALTER TABLE "task" ADD COLUMN "{name}" {kind}')
    if "progress" not in columns:
        database.execute_sql('ALTER TABLE "task" ADD COLUMN "progress" TEXT')
    if "budget_at" not in {column.name for column in database.get_columns(NotifySetting._meta.table_name)}:
        database.execute_sql('ALTER TABLE "notify_setting" ADD COLUMN "budget_at" INTEGER')


WORKSPACE_COLUMNS = (("workspace", "TEXT"), ("branch", "VARCHAR(255)"), ("session_id", "VARCHAR(255)"),
                     ("continues", "INTEGER"))
