"""The database the API and the workers share: its tables, its engine, and the status names.

Imports no web framework and no migration tool, so that a worker loads neither: the API's
Flask glue and its migrations live in api/db.py.
"""
