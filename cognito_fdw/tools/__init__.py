"""The developer tools behind the ``cognito-fdw`` command: ``seed`` (demo users in a pool),
``doctor`` (an installation checked from the outside), ``dev`` and ``devstack`` (the dev
stack of ``make dev`` and the tests' throwaway PostgreSQL and moto).

They run as clients, outside PostgreSQL.  Nothing the server loads (``cognito_fdw.fdw`` and
what it imports) imports from here: ``tests/unit/test_layout.py`` holds it to that.
"""
