"""The one list of objects: the option ``object`` takes its choices from it (and with them
``sql/guard.sql``), IMPORT FOREIGN SCHEMA creates one table of each.

A new object is one module of :mod:`cognito_fdw.tables` with a
:class:`~cognito_fdw.tables.table.Table` subclass and one entry here (plus its columns in
the column registry).
"""

# Option ``object`` value -> the class reading it, as "module:Class" of cognito_fdw.tables.
# Names only: options.py takes them from here without importing a table (and boto3 with it);
# tables.table.table_class imports a module when a table of it is first used.
OBJECTS = {
    "users": "users:Users",
    "groups": "groups:Groups",
    "group_members": "members:Members",
    "user_pool": "user_pool:UserPool",
    "request_stats": "monitor:RequestStats",
    "rate_budget": "monitor:RateBudget",
    "cache": "monitor:CacheEntries",
}
