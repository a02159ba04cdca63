"""What the tests share: imported by test modules and conftest.py, never a test itself.

- ``multicorn``: the Multicorn double the unit tests run on, and doubles of the column
  definitions and quals Multicorn hands a wrapper.
- ``postgres``: SQL for the tests' servers and mappings, psql, the container server.
- ``aws``: moto with IAM authentication on, for the credential tests.
- ``pool``: the shared 150-user test pool, seeded by ``cognito_fdw.tools.seed``.
- ``proxy``: the forwarding proxy between the wrapper and moto (faults, delay, arrivals);
  the benchmark uses it too.
- ``accounting``: the wrapper's per-scan request counts, read from its DEBUG lines.
- ``reliability``: RELIABILITY.md's and SECURITY.md's tables, from what the tests record.
- ``encodings``: how libraries put a value into a message (for the scrubbing tests).
- ``readme_blocks``: the README's code blocks, as the README test runs them.
- ``processes``: ports and processes a dev stack leaves behind.
"""
