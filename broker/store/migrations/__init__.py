"""PostgreSQL schema migrations of the store kernel: ``NNNN_name.sql`` files applied in order.

Each file is plain SQL with unqualified names: :func:`broker.store.postgres_kernel.migrate`
sets ``search_path`` to the broker's schema, runs one file per transaction and records its
version in ``schema_migrations``. A shipped file is never edited once released (its checksum
is recorded); a change is a new file with the next number.
"""
