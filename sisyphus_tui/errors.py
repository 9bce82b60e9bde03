"""The errors sisyphus raises on bad input: each message is one line naming the problem."""


class SisyphusError(Exception):
    """Base of every error the CLI reports as one line and exit code 2."""


class InvalidPayload(SisyphusError):
    """A payload does not validate against its event type's model."""


class UnknownEventType(SisyphusError):
    """An event type is neither registered nor under the ``x.`` prefix."""


class UnknownAgent(SisyphusError):
    """Mail addressed to (or a cursor for) an agent that was never registered."""


class DatabaseError(SisyphusError):
    """The database cannot be used as asked."""


class DatabaseMissing(DatabaseError):
    """The database file does not exist and the command does not create one."""


class DatabaseUnavailable(DatabaseError):
    """A fault that may pass (a lock held too long, a full disk, an I/O error): nothing
    was written, and the same request may succeed later. Retried, never a verdict."""


class DatabaseLocked(DatabaseUnavailable):
    """Another process holds the write lock for longer than the busy timeout."""


class DatabaseFull(DatabaseUnavailable):
    """The disk (or the file system's quota) is full."""


class DatabaseIOError(DatabaseUnavailable):
    """The operating system reported an I/O error on the database."""


class DatabaseReadOnly(DatabaseError):
    """The database (or its folder) cannot be written."""


class SchemaTooNew(DatabaseError):
    """The database was written by a newer sisyphus; it is refused, never modified."""


class NotADatabase(DatabaseError):
    """The file is not a SQLite database, or not a sisyphus one."""


class DatabaseUnsafe(DatabaseError):
    """The database file (or its -wal/-shm) is a symbolic link, another user's, or
    writable by other users: using it could hand our log to someone else."""


class HostBusy(SisyphusError):
    """Another process already hosts this swarm (holds its host lease)."""


class HostFault(SisyphusError):
    """The host stopped on a fault (an actor failed, the database stayed unavailable):
    not a verdict on the run, which resumes when the same command runs again."""
