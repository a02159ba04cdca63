"""The objects a foreign table reads: the table protocol (:mod:`.table`), one module per
object (users, groups, group_members, user_pool) and IMPORT FOREIGN SCHEMA (:mod:`.importer`).

A table plans with the pure core above this package and reaches Cognito only through
:mod:`cognito_fdw.aws`, PostgreSQL only through :mod:`cognito_fdw.pg`.
"""
