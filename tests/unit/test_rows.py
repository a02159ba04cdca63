"""Rows hold only the columns a query reads, and a string the database encoding cannot hold
is an error naming the column, the user and the character."""

from __future__ import annotations

import threading

import pytest

from cognito_fdw.columns import resolve_columns
from cognito_fdw.pg import backend
from cognito_fdw.rows import EncodingError, database_encoding, read_columns, user_row

from ..support.multicorn import column

COLUMNS = resolve_columns(
    {
        "username": column("username", "text"),
        "name": column("name", "text"),
        "email": column("email", "text"),
    },
    dict,
)
USER = {
    "Username": "kei",
    "Attributes": [
        {"Name": "name", "Value": "例え Zoë"},
        {"Name": "email", "Value": "zoë@example.com"},
    ],
}
LATIN1 = database_encoding("LATIN1")


def names(columns):
    return [column.name for column in columns]


def test_only_the_columns_a_query_reads_are_in_the_row():
    assert names(read_columns(COLUMNS, {"email", "username"})) == ["username", "email"]
    assert user_row(USER, read_columns(COLUMNS, {"username"}), LATIN1) == {"username": "kei"}


def test_an_empty_column_set_is_every_column_count_or_a_whole_row_reference():
    assert names(read_columns(COLUMNS, set())) == ["username", "name", "email"]


def test_a_value_latin1_holds_is_returned_as_is():
    row = user_row(USER, read_columns(COLUMNS, {"email"}), LATIN1)
    assert row == {"email": "zoë@example.com"}


def test_a_value_latin1_cannot_hold_names_column_user_and_character():
    with pytest.raises(EncodingError) as caught:
        user_row(USER, COLUMNS, LATIN1)
    error = caught.value
    assert error.message == (
        "cognito_fdw: column name of user 'kei': character with byte sequence 0xe4 0xbe 0x8b "
        'in encoding "UTF8" has no equivalent in encoding "LATIN1"'
    )
    assert "Leave name out of the query" in error.hint
    assert error.detail == "The character is U+4F8B, at position 1 of the value."


def test_sql_ascii_is_encoded_as_ascii_as_multicorn_does():
    with pytest.raises(EncodingError, match='0xc3 0xab in encoding "UTF8" .* "SQL_ASCII"'):
        user_row(USER, read_columns(COLUMNS, {"email"}), database_encoding("SQL_ASCII"))


def test_utf8_holds_everything_but_a_lone_surrogate():
    utf8 = database_encoding("UTF8")
    assert user_row(USER, COLUMNS, utf8)["name"] == "例え Zoë"
    broken = {"Username": "x", "Attributes": [{"Name": "name", "Value": "a\ud800"}]}
    with pytest.raises(EncodingError, match="0xed 0xa0 0x80"):
        user_row(broken, COLUMNS, utf8)


def test_without_a_backend_nothing_is_checked():
    assert backend.database_encoding() is None
    assert database_encoding(None) is None
    assert user_row(USER, COLUMNS, None)["name"] == "例え Zoë"


def test_an_encoding_python_has_no_codec_for_is_a_clear_error():
    with pytest.raises(EncodingError, match="encoding WIN1252: Multicorn2 encodes"):
        database_encoding("WIN1252")


def test_the_encoding_is_read_on_the_backends_thread_only():
    caught = []
    thread = threading.Thread(target=lambda: caught.append(_call(backend.database_encoding)))
    thread.start()
    thread.join()
    assert isinstance(caught[0], backend.OffBackendThread)


def _call(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - handed back to the test's thread
        return exc
