"""What the tests share: imported by test modules and conftest.py, never a test itself.

- ``multicorn``: the Multicorn double the unit tests run on, and the shapes of the column
  definitions and quals Multicorn hands a wrapper.
- ``postgres``: SQL for the tests' servers, mappings and foreign tables, a plan's lines, an
  error's message, psql, the README's install, crash signs in a server log, the server in a
  container, a server of a module's own.
- ``docker``: the tiers (``COGNITO_FDW_TIER``), the engine and BuildKit, the offline
  stand-ins of the official images (``standins/``), the image, the compose stack.
- ``credentials``: moto with IAM authentication on, and a server with every credential source.
- ``pool``: the shared 150-user pool and the groups pool; ``new_user``.
- ``typeddata``: a pool of edge values, and tables with a column of every type.
- ``proxy``: the forwarding proxy between the wrapper and moto (faults, a delay, what
  arrived when); the benchmark uses it too.
- ``accounting``: the wrapper's requests per scan, from its DEBUG lines.
- ``reliability``: RELIABILITY.md and ATTACKS.md, from what the tests record.
- ``encodings``: how libraries put a value into a message (for the scrubbing tests).
- ``readme_blocks``: the code blocks of the README and its pages, as the README test runs them.
- ``processes``: the ports and processes a dev stack leaves behind.
- ``clock``: a clock that moves only when told to, for the rate limiter's tests.
"""
